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

"""The transformers backend (CPU and GPU): batched CoT sampling, then the score step on the generation's KV cache.

CoT-RAIL needs p(score | prompt, CoT, delimiter). After ``generate`` stops a row at the delimiter,
the cache already holds the prompt and the sampled CoT, so only the tokens after the common
prefix of the sampled ids and the training-style encoding of ``<cot> <delimiter>`` (typically the
gap token before the score, or the delimiter of a CoT closed by force) are fed, for the whole
batch in one forward pass. Cache positions past each row's common prefix are masked out, and
position ids continue from it, so the result equals a fresh forward pass over the exact
training-style context.
"""

from typing import TYPE_CHECKING

import torch
from llamafactory.data import get_template_and_fix_tokenizer
from llamafactory.model import load_model, load_tokenizer
from transformers import GenerationConfig, StoppingCriteriaList

from llamafactory_tract.extras.logging import get_logger
from llamafactory_tract.judge.backend import (
    CoTSample,
    JudgeBackend,
    JudgePrompt,
    SamplingConfig,
    build_contexts,
    llamafactory_args,
)
from llamafactory_tract.judge.row_sampling import row_sampling_processors
from llamafactory_tract.judge.score_context import CLOSED_BY_EOS, CLOSED_BY_LENGTH, ScoreContextBuilder
from llamafactory_tract.judge.stopping import StopTextCriteria

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from llamafactory_tract.judge.config import JudgeConfig

logger = get_logger(__name__)


def left_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), left-padded to the longest sequence."""
    width = max(len(sequence) for sequence in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        if sequence:
            input_ids[row, width - len(sequence) :] = torch.tensor(sequence)
            mask[row, width - len(sequence) :] = 1
    return input_ids, mask


def common_prefix_length(first: list[int], second: list[int]) -> int:
    length = 0
    for a, b in zip(first, second, strict=False):
        if a != b:
            break
        length += 1
    return length


class HfJudgeBackend(JudgeBackend):
    def __init__(self, model: "PreTrainedModel", contexts: ScoreContextBuilder) -> None:
        super().__init__(contexts)
        self.model = model
        self.tokenizer = contexts.tokenizer
        self.stop_token_ids = contexts.template.get_stop_token_ids(self.tokenizer)
        self.pad_id = (
            self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.stop_token_ids[0]
        )
        self.score_ids = torch.tensor(self.score_tokens.token_ids)

    @classmethod
    def from_config(cls, config: "JudgeConfig", with_cot: bool) -> "HfJudgeBackend":
        """Load tokenizer, template and model (LoRA adapters applied, not merged on disk) as LLaMA-Factory does."""
        model_args, data_args, finetuning_args = llamafactory_args(config)
        tokenizer = load_tokenizer(model_args)["tokenizer"]
        template = get_template_and_fix_tokenizer(tokenizer, data_args)
        model = load_model(tokenizer, model_args, finetuning_args, is_trainable=False)
        if config.infer_dtype != "auto":
            # LLaMA-Factory 0.9.5 loads with torch_dtype="auto" (the checkpoint's dtype) and only records
            # infer_dtype, so a bf16 judge of a float32 checkpoint would otherwise run in float32.
            model = model.to(getattr(torch, config.infer_dtype))
        return cls(model, build_contexts(tokenizer, template, config, with_cot))

    @property
    def device(self) -> torch.device:
        return self.model.device

    @torch.inference_mode()
    def score_cots(self, prompts: list[JudgePrompt], cots: list[str]) -> list[list[float]]:
        """One fresh forward pass over the left-padded contexts."""
        contexts = [self.contexts.score_context(prompt, cot) for prompt, cot in zip(prompts, cots, strict=True)]
        input_ids, mask = left_pad(contexts, self.pad_id)
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = self.model(
            input_ids=input_ids, attention_mask=mask, position_ids=position_ids, logits_to_keep=1
        ).logits
        return self._score_probs(logits[:, -1])

    @torch.inference_mode()
    def sample_cots(
        self, prompts: list[JudgePrompt], sampling: SamplingConfig, seeds: list[int], with_scores: bool = True
    ) -> list[CoTSample]:
        """Sample the batch (row i from its own generator seeded with ``seeds[i]``), then score it on the cache."""
        prompt_ids = [self.contexts.prompt_ids(prompt) for prompt in prompts]
        input_ids, mask = left_pad(prompt_ids, self.pad_id)
        prompt_width = input_ids.shape[1]
        stopper = StopTextCriteria(self.tokenizer, self.contexts.stop_texts, prompt_width)
        output = self.model.generate(
            input_ids=input_ids.to(self.device),
            attention_mask=mask.to(self.device),
            generation_config=self._generation_config(sampling),
            logits_processor=row_sampling_processors(seeds, sampling.temperature, sampling.top_p, self.device),
            stopping_criteria=StoppingCriteriaList([stopper]),
        )
        sequences = output.sequences.tolist()
        samples, contexts, kept = [], [], []
        cached_generated = output.past_key_values.get_seq_length() - prompt_width
        for row, prompt in enumerate(prompts):
            generated = sequences[row][prompt_width:]
            length, closed_by = self._generated_length(generated, stopper.stopped_at.get(row), prompt_width)
            text = self.tokenizer.decode(generated[:length], skip_special_tokens=True)
            cot, closed_by = self.contexts.split_generated(text, closed_by)
            context = self.contexts.score_context(prompt, cot)
            sampled = prompt_ids[row] + generated[: min(length, cached_generated)]
            kept.append(min(common_prefix_length(sampled, context), len(context) - 1))
            contexts.append(context)
            samples.append(CoTSample(cot=cot, closed_by=closed_by, generated_tokens=length))
        if not with_scores:
            return samples
        probs = self._score_on_cache(output.past_key_values, mask, prompt_ids, contexts, kept)
        for sample, sample_probs in zip(samples, probs, strict=True):
            sample.score_probs = sample_probs
        return samples

    def _generation_config(self, sampling: SamplingConfig) -> GenerationConfig:
        """Greedy over what ``row_sampling_processors`` leaves (one token per row when sampling)."""
        return GenerationConfig(
            do_sample=False,
            repetition_penalty=sampling.repetition_penalty,
            max_new_tokens=sampling.max_new_tokens,
            eos_token_id=self.stop_token_ids,
            pad_token_id=self.pad_id,
            return_dict_in_generate=True,
        )

    def _generated_length(self, generated: list[int], stopped_at: int | None, prompt_width: int) -> tuple[int, str]:
        """Number of real generated tokens and why generation ended; a text stop is classified by the caller."""
        if stopped_at is not None:
            return stopped_at - prompt_width, CLOSED_BY_LENGTH
        for index, token in enumerate(generated):
            if token in self.stop_token_ids:
                return index, CLOSED_BY_EOS
        return len(generated), CLOSED_BY_LENGTH

    def _score_on_cache(
        self,
        cache,
        prompt_mask: torch.Tensor,
        prompt_ids: list[list[int]],
        contexts: list[list[int]],
        kept: list[int],
    ) -> list[list[float]]:
        """One forward over each row's context[kept:], attending to the first ``kept`` cached tokens of the row."""
        prompt_width = prompt_mask.shape[1]
        cache_length = cache.get_seq_length()
        feeds = [context[keep:] for context, keep in zip(contexts, kept, strict=True)]
        width = max(len(feed) for feed in feeds)
        input_ids = torch.full((len(feeds), width), self.pad_id, dtype=torch.long)
        position_ids = torch.zeros((len(feeds), width), dtype=torch.long)
        mask = torch.zeros((len(feeds), cache_length + width), dtype=torch.long)
        mask[:, :prompt_width] = prompt_mask
        for row, (feed, keep) in enumerate(zip(feeds, kept, strict=True)):
            kept_generated = keep - len(prompt_ids[row])
            if kept_generated < 0:
                mask[row, prompt_width + kept_generated : prompt_width] = 0
            else:
                mask[row, prompt_width : prompt_width + kept_generated] = 1
            input_ids[row, width - len(feed) :] = torch.tensor(feed)
            position_ids[row, width - len(feed) :] = torch.arange(keep, keep + len(feed))
            mask[row, cache_length + width - len(feed) :] = 1
        logits = self.model(
            input_ids=input_ids.to(self.device),
            attention_mask=mask.to(self.device),
            position_ids=position_ids.to(self.device),
            past_key_values=cache,
            logits_to_keep=1,
        ).logits
        return self._score_probs(logits[:, -1])

    def _score_probs(self, logits: torch.Tensor) -> list[list[float]]:
        probs = torch.softmax(logits.float(), dim=-1)
        return probs[:, self.score_ids.to(probs.device)].cpu().tolist()
