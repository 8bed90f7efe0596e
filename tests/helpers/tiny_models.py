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

"""Real tokenizers and tiny randomly initialised Llama models, built on the spot for the tests.

Three tokenizer families cover the digit/space traps of DESIGN.md section 3: SentencePiece
style (Metaspace, digits split: '▁is' '▁' '4'), tiktoken style (Llama-3's split regex, digits
in groups of 1-3 without the space), and GPT-2 style byte-level BPE (space merged: 'Ġ4').
"""

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

CORPUS = [
    "The response is clear and accurate. So the overall score is 4",
    "The response misses the key point of the rubric. So the overall score is 2",
    "Feedback: well structured, helpful, grounded in the reference. [RESULT] 5",
    "It partially follows the instruction but is vague. So the overall score is 3",
    "An irrelevant answer with errors. So the overall score is 1",
    "###Task Description: An instruction, a response to evaluate, a reference answer and a score rubric.",
    "###Response to evaluate: 12 apples and 345 pears cost 6789 coins, 10 percent off.",
    "How can I improve my time management skills? Prioritize tasks, plan, rest.",
] * 4

LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]


def _train(tokenizer: Tokenizer, specials: list[str], alphabet: list[str]) -> Tokenizer:
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=specials, initial_alphabet=alphabet)
    tokenizer.train_from_iterator(CORPUS, trainer=trainer)
    return tokenizer


def sentencepiece_style_tokenizer() -> PreTrainedTokenizerFast:
    """Mistral/Llama-2 style: Metaspace pre-tokenizer, every digit its own token, '<s>'/'</s>'."""
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Replace(" ", "▁")
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Metaspace(prepend_scheme="first", split=True), pre_tokenizers.Digits(individual_digits=True)]
    )
    tokenizer.decoder = decoders.Metaspace(prepend_scheme="first")
    tokenizer.normalizer = None
    _train(tokenizer, ["<unk>", "<s>", "</s>"], list("0123456789"))
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def tiktoken_style_tokenizer() -> PreTrainedTokenizerFast:
    """Llama-3 style: byte-level with the cl100k split regex (digits in groups of 1-3, space apart)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    _train(tokenizer, LLAMA3_SPECIALS, pre_tokenizers.ByteLevel.alphabet())
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>", pad_token="<|end_of_text|>"
    )


def gpt2_style_tokenizer() -> PreTrainedTokenizerFast:
    """GPT-2 style byte-level BPE: ' 4' merges into one token 'Ġ4'; ChatML specials."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    _train(tokenizer, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], pre_tokenizers.ByteLevel.alphabet())
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>")
