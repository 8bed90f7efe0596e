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

"""Text files that must be UTF-8 (datasets, benchmarks, ``tract judge`` inputs), read with a usable error.

Python's ``UnicodeDecodeError`` gives a byte offset in a buffer; pyarrow's (through ``datasets``) gives
none. The message here names the file, the line and column of the first bad byte, and how to convert.
"""

from pathlib import Path

from llamafactory_tract.extras.errors import TractUserError


def read_utf8(path: Path, error: type[Exception] = TractUserError) -> str:
    """The file's text; ``error`` names the file, line and column when it is not UTF-8."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as problem:
        raise error(describe_bad_utf8(path, data, problem)) from None


def describe_bad_utf8(path: Path, data: bytes, problem: UnicodeDecodeError) -> str:
    line_start = data.rfind(b"\n", 0, problem.start) + 1
    line = data.count(b"\n", 0, problem.start) + 1
    return (
        f"{path} is not UTF-8 text: byte 0x{data[problem.start]:02x} at line {line}, column "
        f"{problem.start - line_start + 1} (byte offset {problem.start}) cannot be decoded ({problem.reason}). "
        f"Re-save the file as UTF-8, e.g. from Latin-1: iconv -f latin1 -t utf-8 {path} > utf8_copy"
    )
