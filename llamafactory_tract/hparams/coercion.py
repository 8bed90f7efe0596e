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

"""Give training keys their declared types, naming the key when a value has none.

LLaMA-Factory parses a YAML (and its ``key=value`` overrides, through OmegaConf) with
``HfArgumentParser.parse_dict``, which passes values to the dataclasses as they are: ``raft_lambda: "abc"``
arrives as a string and fails later as ``TypeError: '<' not supported between 'str' and 'int'``, and
``"false"`` is a true value. Values are coerced here (``"0.5"`` -> 0.5, ``"false"`` -> False) or refused
with the key named: our keys always (``coerce_own_fields``, in their ``__post_init__``), and every
bool/int/float key of a ``stage: cotraft`` run before it is parsed (``coerce_args``, from ``patches/``),
where an unknown key is named with the nearest known one (``refuse_unknown_keys``).
"""

import dataclasses
import difflib
import types
import typing
from functools import cache
from typing import Any, Literal

from llamafactory_tract.extras.errors import TractUserError

TRUE_WORDS = ("true", "yes", "y", "1", "on")
FALSE_WORDS = ("false", "no", "n", "0", "off")


def coerce_own_fields(instance: Any, owner: type) -> None:
    """Coerce the fields ``owner`` declares itself (not those it inherits) on ``instance``, in place."""
    types_of = _field_types(owner)
    for name in owner.__dict__.get("__annotations__", {}):
        setattr(instance, name, coerce_value(name, getattr(instance, name), *types_of[name]))


def coerce_args(args: dict[str, Any], classes: list[type]) -> dict[str, Any]:
    """``args`` (a parsed YAML with overrides) with each key coerced to its field's type in ``classes``."""
    types_of = {name: found for cls in classes for name, found in _field_types(cls).items()}
    return {key: coerce_value(key, value, *types_of[key]) if key in types_of else value for key, value in args.items()}


def refuse_unknown_keys(args: dict[str, Any], classes: list[type]) -> None:
    """Name each key of ``args`` that no field of ``classes`` has, with the nearest known key."""
    known = {name for cls in classes for name in _field_types(cls)}
    problems = []
    for key in sorted(set(args) - known):
        close = difflib.get_close_matches(key, known, n=1)
        problems.append(f"unknown key `{key}`" + (f" (did you mean `{close[0]}`?)" if close else ""))
    if problems:
        raise TractUserError("; ".join(problems) + ": fix it in the YAML or its key=... override.")


@cache
def _field_types(cls: type) -> dict[str, tuple[Any, Any]]:
    """Field name -> (annotation, default) of a dataclass."""
    hints = typing.get_type_hints(cls)
    return {field.name: (hints[field.name], field.default) for field in dataclasses.fields(cls)}


def coerce_value(key: str, value: Any, annotation: Any, default: Any) -> Any:
    """``value`` as ``annotation`` (bool, int, float, str, a Literal of strings, or one of them | None)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        options = [option for option in typing.get_args(annotation) if option is not type(None)]
        if len(options) != 1:
            return value  # e.g. str | dict: read by the key's own code
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "")):
            return None
        annotation = options[0]
    choices = typing.get_args(annotation) if typing.get_origin(annotation) is Literal else ()
    if choices and all(isinstance(choice, str) for choice in choices):
        if str(value) not in choices:
            raise _refused(key, value, f"one of {', '.join(choices)}", default)
        return str(value)
    if annotation is bool:
        return _to_bool(key, value, default)
    if annotation is int:
        return _to_int(key, value, default)
    if annotation is float:
        return _to_float(key, value, default)
    return value  # strings (and comma lists given as YAML lists) are read by the key's own property


def _to_bool(key: str, value: Any, default: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS + FALSE_WORDS:
        return value.strip().lower() in TRUE_WORDS
    raise _refused(key, value, "true or false", default)


def _to_int(key: str, value: Any, default: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise _refused(key, value, "a whole number", default)


def _to_float(key: str, value: Any, default: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise _refused(key, value, "a number", default)


def _refused(key: str, value: Any, kind: str, default: Any) -> TractUserError:
    example = f" (default: {default})" if default is not None and default is not dataclasses.MISSING else ""
    return TractUserError(
        f"`{key}` must be {kind}{example}, got {value!r}: fix `{key}` in the YAML or its {key}=... override."
    )
