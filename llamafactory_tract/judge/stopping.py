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

"""Stop each sequence of a batch as soon as its generated text contains the delimiter (or a CoT-end marker).

The check is on decoded text, not on token ids, because the delimiter has no fixed tokenisation
(a sampled CoT may spell it with different tokens than the tokenizer would). Only a short tail of
the generated tokens is decoded per step, and only for rows still running.
"""

import torch
from transformers import PreTrainedTokenizer, StoppingCriteria

TAIL_MARGIN_TOKENS = 4


class StopTextCriteria(StoppingCriteria):
    """Per-row stop on any of ``stop_texts``; records the sequence length at which each row stopped."""

    def __init__(self, tokenizer: PreTrainedTokenizer, stop_texts: tuple[str, ...], prompt_length: int) -> None:
        self.tokenizer = tokenizer
        self.stop_texts = stop_texts
        self.prompt_length = prompt_length
        longest = max(len(tokenizer.encode(text, add_special_tokens=False)) for text in stop_texts)
        self.tail_tokens = longest + TAIL_MARGIN_TOKENS
        self.stopped_at: dict[int, int] = {}

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        length = input_ids.shape[1]
        start = max(self.prompt_length, length - self.tail_tokens)
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        for row in range(input_ids.shape[0]):
            if row in self.stopped_at:
                done[row] = True
                continue
            tail = self.tokenizer.decode(input_ids[row, start:].tolist(), skip_special_tokens=True)
            if any(text in tail for text in self.stop_texts):
                self.stopped_at[row] = length
                done[row] = True
        return done
