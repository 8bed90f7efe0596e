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

"""The score token is found from the text, for any tokenizer and template.

The three tiny tokenizers cover the digit/space traps of real ones: SentencePiece ('▁is' '▁' '4'),
Llama-3/tiktoken ('Ġis' 'Ġ' '4' after the chat template) and GPT-2 byte-level BPE ('Ġis' 'Ġ4').
"""

import re

import pytest
from llamafactory.data import get_template_and_fix_tokenizer
from llamafactory.hparams import DataArguments
from transformers import AutoTokenizer

from llamafactory_tract.data.score_format import ScoreFormat
from llamafactory_tract.data.score_tokens import (
    ScoreTokenizationError,
    encode_response,
    locate_score_token,
    resolve_score_tokens,
)

COT = "The answer is helpful, with 12 concrete steps."


def load(model_dir, template_name):
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    template = get_template_and_fix_tokenizer(tokenizer, DataArguments(template=template_name))
    return tokenizer, template


def check_located_score(tokenizer, template, score_format=None):
    score_format = score_format or ScoreFormat()
    score_tokens = resolve_score_tokens(template, tokenizer, score_format)
    for literal in score_format.values:
        response_ids = encode_response(template, tokenizer, score_format.format_response(COT, literal))
        index = locate_score_token(template, tokenizer, score_tokens, response_ids, COT, literal)
        assert tokenizer.decode([response_ids[index]]).strip() == literal
        before = tokenizer.decode(response_ids[:index], skip_special_tokens=True)
        assert before.rstrip().endswith(score_format.delimiter)
        after = tokenizer.decode(response_ids[index + 1 :], skip_special_tokens=True)
        assert not any(character.isdigit() for character in after)
    return score_tokens, response_ids, index


@pytest.mark.parametrize("family", ["sentencepiece", "tiktoken", "gpt2"])
def test_score_position_on_built_tokenizers(tiny_model_dirs, family):
    model_dir, template_name = tiny_model_dirs[family]
    tokenizer, template = load(model_dir, template_name)
    _, response_ids, index = check_located_score(tokenizer, template)
    # Templates append end-of-turn tokens after the score: the score is never simply the last token.
    assert index < len(response_ids) - 1


def test_score_position_on_smollm2(smollm2_dir):
    tokenizer, template = load(smollm2_dir, "smollm2")
    score_tokens, response_ids, index = check_located_score(tokenizer, template)
    pieces = tokenizer.convert_ids_to_tokens(response_ids)
    # SmolLM2 encodes "is 5" as 'Ġis' 'Ġ' '5', then '<|im_end|>' '\n' ('Ċ'): the score is third from last.
    assert pieces[index - 2 : index + 1] == ["Ġis", "Ġ", "5"]
    assert pieces[index + 1 :] == ["<|im_end|>", "Ċ"]
    assert tokenizer.convert_ids_to_tokens(list(score_tokens.token_ids)) == ["1", "2", "3", "4", "5"]


def test_gpt2_style_merges_the_space_into_the_score_token(tiny_model_dirs):
    tokenizer, template = load(*tiny_model_dirs["gpt2"])
    score_tokens = resolve_score_tokens(template, tokenizer, ScoreFormat())
    assert tokenizer.convert_ids_to_tokens(list(score_tokens.token_ids)) == ["Ġ1", "Ġ2", "Ġ3", "Ġ4", "Ġ5"]


@pytest.mark.parametrize(
    ("family", "values", "blamed"),
    [
        ("sentencepiece", ("1", "5", "10"), "['10']"),  # digits are split one by one
        ("sentencepiece", ("10", "1", "5"), "['10']"),  # first in the list: still the one blamed
        ("tiktoken", ("1", "1.5", "2"), "['1.5']"),  # '1' '.' '5': three tokens
    ],
)
def test_the_multi_token_score_value_is_the_one_named(tiny_model_dirs, family, values, blamed):
    tokenizer, template = load(*tiny_model_dirs[family])
    with pytest.raises(ScoreTokenizationError, match=rf"Score values {re.escape(blamed)} are not single tokens"):
        resolve_score_tokens(template, tokenizer, ScoreFormat(values=values))


def test_no_cot_responses_are_the_score_alone(tiny_model_dirs):
    tokenizer, template = load(*tiny_model_dirs["tiktoken"])
    score_tokens = resolve_score_tokens(template, tokenizer, ScoreFormat(), with_cot=False)
    response_ids = encode_response(template, tokenizer, "3")
    assert locate_score_token(template, tokenizer, score_tokens, response_ids, "", "3") == 0
