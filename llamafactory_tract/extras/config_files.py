# Copyright 2026 the llamafactory-tract authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""Config files read the way LLaMA-Factory reads its own: YAML and ``key=value`` overrides through OmegaConf.

The merged mapping is then validated by a pydantic model (typed, nested, unknown keys refused), and
every problem is reported as one ``TractConfigError`` that names the file and the dotted key, so a
typo such as ``temprature`` fails before a model loads instead of silently falling back to a default.
"""

import difflib
import io
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import BaseModel, ValidationError

from llamafactory_tract.extras.errors import TractUserError
from llamafactory_tract.extras.text_files import read_utf8

Model = TypeVar("Model", bound=BaseModel)


class TractConfigError(TractUserError):
    """A config file or override is invalid; the message names the file and the key."""


def read_yaml(path: str | Path, error: type[TractConfigError] = TractConfigError) -> DictConfig:
    """One YAML mapping; a missing file, one not in UTF-8, bad YAML or a non-mapping top level is an error naming
    the file."""
    path = Path(path)
    if not path.is_file():
        raise error(f"Config file {path} does not exist.")
    text = read_utf8(path, error)
    try:
        loaded = OmegaConf.load(io.StringIO(text))
    except (OmegaConfBaseException, yaml.YAMLError) as exc:
        raise error(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(loaded, DictConfig):
        raise error(f"{path} must contain a mapping of keys to values.")
    return loaded


def parse_overrides(items: list[str], error: type[TractConfigError] = TractConfigError) -> DictConfig:
    """``key=value`` items (``benchmarks.mt_bench.limit=5`` for nested keys) as an OmegaConf dotlist."""
    malformed = [item for item in items if "=" not in item or not item.partition("=")[0].strip()]
    if malformed:
        raise error(f"Override(s) {malformed} are not of the form key=value.")
    try:
        return OmegaConf.from_dotlist(list(items))
    except OmegaConfBaseException as exc:
        raise error(f"Invalid override in {items}: {exc}") from exc


def merge(*configs: DictConfig | dict[str, Any], error: type[TractConfigError] = TractConfigError) -> DictConfig:
    """Deep merge left to right (mappings merge key by key, lists and scalars are replaced)."""
    try:
        return OmegaConf.merge(*configs)
    except OmegaConfBaseException as exc:
        raise error(f"Cannot merge configs: {exc}") from exc


def to_plain(config: DictConfig, source: str, error: type[TractConfigError] = TractConfigError) -> dict[str, Any]:
    """A plain dict with ``${...}`` interpolations resolved."""
    try:
        return OmegaConf.to_container(config, resolve=True)
    except OmegaConfBaseException as exc:
        raise error(f"{source}: {exc}") from exc


def validate(model: type[Model], raw: Any, source: str, error: type[TractConfigError] = TractConfigError) -> Model:
    """``model`` built from ``raw``; every validation problem is listed with its dotted key."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = [_describe(model, item) for item in exc.errors()]
        raise error(f"{source}: " + "; ".join(problems)) from None


def _describe(model: type[BaseModel], item: dict[str, Any]) -> str:
    loc = tuple(str(part) for part in item["loc"])
    key = ".".join(loc)
    kind = item["type"]
    if kind == "extra_forbidden":
        known = _known_keys(model, loc[:-1])
        close = difflib.get_close_matches(loc[-1], known, n=1)
        hint = f" (did you mean `{close[0]}`?)" if close else f" (known keys: {', '.join(known)})"
        return f"unknown key `{key}`{hint}"
    if kind == "missing":
        return f"missing required key `{key}`"
    message = item["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if not key:
        return message
    return f"`{key}`: {message} (got {item['input']!r})"


def _known_keys(model: type[BaseModel], loc: tuple[str, ...]) -> list[str]:
    """Field names of the model found at ``loc`` (through optional fields and ``dict[str, Model]`` values)."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part)
            current = field.annotation if field else None
        elif typing.get_origin(current) is dict:
            current = typing.get_args(current)[1]
        else:
            return []
    current = _unwrap(current)
    return sorted(current.model_fields) if isinstance(current, type) and issubclass(current, BaseModel) else []


def _unwrap(annotation: Any) -> Any:
    """``X | None`` -> ``X``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        options = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return options[0] if len(options) == 1 else annotation
    return annotation
