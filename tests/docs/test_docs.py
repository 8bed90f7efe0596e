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

"""The documentation a newcomer navigates: a short README whose links resolve, and a docs site that builds strictly."""

import re
import subprocess
import sys
from pathlib import Path

import yaml

from tests.helpers.paths import REPO_ROOT

ROOT = REPO_ROOT
README_MAX_LINES = 250
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_mkdocs_builds_strictly(tmp_path: Path) -> None:
    """A broken link, a missing anchor or a page left out of the nav fails the build (mkdocs.yml sets them to warn)."""
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "site" / "training" / "index.html").is_file()


def test_every_docs_page_is_in_the_nav() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    in_nav = {next(iter(entry.values())) for entry in config["nav"]}
    assert in_nav == {path.name for path in (ROOT / "docs").glob("*.md")}


def test_readme_is_short_and_its_links_resolve() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= README_MAX_LINES
    targets = [target for target in LINK.findall(readme) if not target.startswith(("http://", "https://"))]
    assert targets, "the README links to the reference pages"
    missing = [target for target in targets if not (ROOT / target.split("#")[0]).exists()]
    assert not missing, f"README links to files that do not exist: {missing}"
