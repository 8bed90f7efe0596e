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

"""The TRACT data keys, as an extension of LLaMA-Factory's ``DataArguments``.

They shape how a judge row becomes ``input_ids``/``labels`` (like ``cutoff_len`` or
``train_on_prompt``), so they live where LLaMA-Factory's processors read their options: the
``cotraft`` processor is built from ``(template, tokenizer, processor, data_args)`` like any other.
"""

from dataclasses import dataclass, field

from llamafactory.hparams.data_args import DataArguments

from llamafactory_tract.extras.constants import DEFAULT_DELIMITER, DEFAULT_SCORE_VALUES
from llamafactory_tract.extras.errors import TractUserError
from llamafactory_tract.hparams.coercion import coerce_own_fields

DEFAULT_MIN_PROMPT_SHARE = 0.5


@dataclass
class TractDataArguments(DataArguments):
    score_delimiter: str = field(
        default=DEFAULT_DELIMITER,
        metadata={"help": "[cotraft] Text that ends every CoT and precedes the score token."},
    )
    score_values: str = field(
        default=",".join(DEFAULT_SCORE_VALUES),
        metadata={
            "help": "[cotraft] Score values, comma-separated (`1,2,3,4,5`) or a YAML list; each must be a single "
            "token after the delimiter."
        },
    )
    cotraft_drop_cot: bool = field(
        default=False,
        metadata={"help": "[cotraft] Train on the score alone, without CoT (RAFT, paper Table 2 row B.4)."},
    )
    cotraft_strict_data: bool = field(
        default=False,
        metadata={"help": "[cotraft] Stop with the list of invalid rows instead of dropping and reporting them."},
    )
    cotraft_score_in_ce: bool = field(
        default=False,
        metadata={
            "help": "[cotraft] Also train the score token with CE (standard fine-tuning; with raft_lambda: 0 this is "
            "the CE baseline of paper Table 2 rows B.1, B.2, A.2, A.3). Off: the score enters only via RAFT."
        },
    )
    cotraft_min_prompt_share: float = field(
        default=DEFAULT_MIN_PROMPT_SHARE,
        metadata={
            "help": "[cotraft] A prompt longer than cutoff_len minus the response is shortened in the middle; a row "
            "whose kept share of prompt tokens would fall below this is dropped and reported instead (0: never drop)."
        },
    )

    score_only_prompt: bool = field(
        default=False,
        metadata={
            "help": "[cotraft] The TRACT authors' rule for score-only rows (needs cotraft_drop_cot): rewrite each "
            "judge prompt to their no-feedback prompt (score only, ends '###Score (an integer from 1 to 5):'). "
            "Off: the paper's one judge prompt for every row. The judge takes the same key (from the adapter's card)."
        },
    )
    remove_reference: bool = field(
        default=False,
        metadata={
            "help": "[cotraft] The TRACT authors' `--remove`: cut the reference-answer section out of each judge "
            "prompt (prompts without one are kept and counted). The judge takes the same key (from the adapter's "
            "card)."
        },
    )
    cotraft_require_delimiter: bool = field(
        default=False,
        metadata={
            "help": "[cotraft] The TRACT authors' `--cot_no_result`: drop (and report) rows whose CoT lacks "
            "score_delimiter instead of closing the CoT with it. Off: such CoTs are closed with the delimiter."
        },
    )

    def __post_init__(self) -> None:
        coerce_own_fields(self, TractDataArguments)
        super().__post_init__()
        if not 0.0 <= self.cotraft_min_prompt_share <= 1.0:
            raise TractUserError(f"`cotraft_min_prompt_share` must be in [0, 1], got {self.cotraft_min_prompt_share}.")
        if self.score_only_prompt and not self.cotraft_drop_cot:
            raise TractUserError(
                "`score_only_prompt` rewrites the judge prompt to the TRACT authors' score-only prompt "
                "('do not generate ... explanations'), which contradicts training on a CoT: set "
                "`cotraft_drop_cot: true` (Table 2 B.1, B.4) or unset `score_only_prompt`."
            )
        if self.cotraft_require_delimiter and self.cotraft_drop_cot:
            raise TractUserError(
                "`cotraft_require_delimiter` selects rows by their CoT, but `cotraft_drop_cot: true` trains without "
                "one: unset one of them."
            )
