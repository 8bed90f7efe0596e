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

"""The judge card: what a trained judge needs at inference, saved beside its adapter.

A judge is calibrated only on the prompt and score format it was trained with. The card records them when
``stage: cotraft`` saves a model, so the judge commands can take them as defaults and stop, naming both
values, when their configuration contradicts the training.
"""

import json
from dataclasses import asdict, dataclass
from pathlib import Path

JUDGE_CARD_FILE = "tract_judge_card.json"


@dataclass(frozen=True)
class JudgeCard:
    base_model: str
    template: str
    score_delimiter: str
    score_values: tuple[str, ...]
    score_only_prompt: bool
    remove_reference: bool

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / JUDGE_CARD_FILE
        path.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        return path


class InvalidJudgeCard(ValueError):
    """A card that cannot be read; the message names the file."""


def read_judge_card(adapter_dir: str | Path) -> JudgeCard | None:
    """The card in a local adapter folder, or None (a Hub id, a checkpoint folder, an adapter from elsewhere)."""
    path = Path(adapter_dir).expanduser() / JUDGE_CARD_FILE
    if not path.is_file():
        return None
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
        return JudgeCard(**{**values, "score_values": tuple(values["score_values"])})
    except (ValueError, TypeError, KeyError) as error:
        raise InvalidJudgeCard(f"{path} is not a judge card ({error}); delete it or restore it") from None
