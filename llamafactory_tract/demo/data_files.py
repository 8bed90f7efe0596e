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

"""The demo's Prometheus files: a local folder when one is named, else downloaded once, verified and cached.

The files are the public evaluation sets of the prometheus-eval repository (the same bytes as the
TRACT authors' ``inference/data/`` copies), fetched from a pinned commit so their SHA-256 never
changes; a mismatch (a proxy's error page, a truncated transfer) stops the demo instead of training
on it. ``--data-dir`` / ``TRACT_SHARED_DATA`` replace the download on machines without internet.
"""

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from llamafactory_tract.demo.smollm2 import DEFAULT_CACHE
from llamafactory_tract.eval.datasets import PROMETHEUS_EVAL_COMMIT, PROMETHEUS_EVAL_URL
from llamafactory_tract.extras.errors import TractUserError
from llamafactory_tract.extras.logging import get_logger

logger = get_logger(__name__)

PROMETHEUS_DATA_URL = PROMETHEUS_EVAL_URL.format("")
SHA256 = {
    "vicuna_eval.json": "131550a5815f75014a3ea71b0f534fb7ef0ca49b714c4e66935c35fdee1daacc",
    "mt_bench_eval.json": "5bf33413c34173c3b94f008499fd9098fb6338d5d1cf64f341e8e0c9b9f105cf",
}
DATA_DIR_ENV = "TRACT_SHARED_DATA"
DOWNLOAD_TIMEOUT_S = 60


class DemoDataError(TractUserError):
    """The demo's data files are missing, cannot be downloaded, or fail their checksum."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def local_data_dir(data_dir: Path | None) -> Path | None:
    """The folder the user named (``--data-dir``, else ``TRACT_SHARED_DATA``), or None to download."""
    if data_dir is not None:
        return data_dir
    from_env = os.environ.get(DATA_DIR_ENV)
    return Path(from_env) if from_env else None


def demo_data_dir(
    data_dir: Path | None = None, cache_dir: Path = DEFAULT_CACHE, base_url: str = PROMETHEUS_DATA_URL
) -> Path:
    """A folder holding every file of ``SHA256``: the named one (checked for presence), else the cache."""
    local = local_data_dir(data_dir)
    if local is not None:
        missing = [name for name in SHA256 if not (local / name).is_file()]
        if missing:
            raise DemoDataError(
                f"{', '.join(missing)} not found in {local} (from --data-dir or {DATA_DIR_ENV}): point it at a "
                f"folder with the prometheus-eval files, or leave both unset to download them from {base_url}."
            )
        return local
    target = cache_dir / "prometheus-eval" / PROMETHEUS_EVAL_COMMIT[:12]
    for name, expected in SHA256.items():
        fetch_verified(base_url + name, target / name, expected)
    return target


def fetch_verified(url: str, path: Path, expected_sha256: str) -> Path:
    """``path`` if it is there with the right checksum; else download ``url`` to it and verify first."""
    if path.is_file() and sha256_of(path) == expected_sha256:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    logger.info_rank0(f"Downloading {url} -> {path}")
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, partial.open("wb") as handle:
            for block in iter(lambda: response.read(1 << 20), b""):
                handle.write(block)
    except (urllib.error.URLError, OSError) as error:
        partial.unlink(missing_ok=True)
        raise DemoDataError(
            f"Could not download {url} ({error}). Without internet, pass --data-dir (or set {DATA_DIR_ENV}) "
            f"to a folder holding {', '.join(SHA256)}."
        ) from error
    actual = sha256_of(partial)
    if actual != expected_sha256:
        partial.unlink()
        raise DemoDataError(f"{url}: SHA-256 {actual} does not match the expected {expected_sha256}; not used.")
    partial.replace(path)
    return path
