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

"""Reproducible sampling per row for transformers ``generate``: each row draws from its own generator.

``generate(do_sample=True)`` draws the whole batch from the global RNG, so a row's CoT would depend on
the other rows of its batch, on ``batch_size`` and on where an interrupted run resumed. Here greedy
``generate`` runs with one extra logits processor that, after the repetition penalty ``generate``
applies itself, applies the paper's temperature and top-p with transformers' own warpers, draws each
row's next token from that row's ``torch.Generator`` (seeded from the run seed, the row and the
draw) and leaves only that token finite, so the greedy step picks exactly it. The KV cache, the
stopping criteria and everything else of ``generate`` are unchanged. The draws are the row's own; the
logits they are drawn from still depend on the batch's padded shape by rounding, which on CPU in float32
changed no CoT in the tests, while in bf16/fp16 on a GPU it can where two tokens are nearly tied.
"""

import torch
from transformers import LogitsProcessor, LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper


class PerRowSampler(LogitsProcessor):
    """Sample row ``i`` with ``generators[i]`` from softmax(top_p(scores / temperature))."""

    def __init__(self, seeds: list[int], temperature: float, top_p: float, device: torch.device) -> None:
        self.warpers = LogitsProcessorList()
        if temperature != 1.0:
            self.warpers.append(TemperatureLogitsWarper(temperature))
        if top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(top_p))
        self.generators = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if scores.shape[0] != len(self.generators):
            raise ValueError(f"PerRowSampler has {len(self.generators)} generators for a batch of {scores.shape[0]}.")
        probs = torch.softmax(self.warpers(input_ids, scores).float(), dim=-1)
        draws = zip(probs, self.generators, strict=True)
        tokens = torch.cat([torch.multinomial(row, 1, generator=generator) for row, generator in draws])
        chosen = torch.full_like(scores, -torch.inf)
        chosen[torch.arange(scores.shape[0], device=scores.device), tokens] = 0.0
        return chosen


def row_sampling_processors(
    seeds: list[int], temperature: float, top_p: float, device: torch.device
) -> LogitsProcessorList:
    """The processors for ``generate(do_sample=False)``: per-row sampling, or none for greedy (temperature 0)."""
    if temperature == 0:
        return LogitsProcessorList()
    return LogitsProcessorList([PerRowSampler(seeds, temperature, top_p, device)])
