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

import pytest

from llamafactory_tract.data.score_format import InvalidJudgeResponse, ScoreFormat

FORMAT = ScoreFormat()


@pytest.mark.parametrize(
    ("response", "cot", "score"),
    [
        ("Clear and correct. So the overall score is 4", "Clear and correct.", "4"),
        ("Clear and correct. So the overall score is 4.", "Clear and correct.", "4"),
        ("Clear and correct. So the overall score is: 5 ", "Clear and correct.", "5"),
        ("Feedback: vague answer. [RESULT] 2", "Feedback: vague answer.", "2"),
        ("Vague answer. So the overall score is 2 [RESULT] 2", "Vague answer.", "2"),
        ("Vague answer. So the overall score is [RESULT] 3", "Vague answer.", "3"),
        ("Vague answer. [RESULT] 3.0", "Vague answer.", "3"),
    ],
)
def test_split_response_accepts_the_forms_real_data_has(response, cot, score):
    assert FORMAT.split_response(response) == (cot, score)


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        ("A fine answer with no score at all.", "missing score"),
        ("A fine answer. [RESULT] four", "unparsable score"),
        ("A fine answer. So the overall score is 7", "not one of the configured score_values"),
        ("A fine answer. [RESULT] 0", "not one of the configured score_values"),
        ("So the overall score is 3 [RESULT] 4", "conflicting scores"),
    ],
)
def test_split_response_rejects_bad_scores_with_a_reason(response, reason):
    with pytest.raises(InvalidJudgeResponse, match=reason):
        FORMAT.split_response(response)


@pytest.mark.parametrize("literal", FORMAT.values)
def test_the_canonical_text_parses_back_to_its_cot_and_score(literal):
    assert FORMAT.split_response(FORMAT.format_response("Good, 3 steps.", literal)) == ("Good, 3 steps.", literal)


def test_the_score_after_the_last_delimiter_is_taken_and_earlier_ones_stay_in_the_cot():
    response = "So the overall score is 2 at first. Then better. So the overall score is 4"
    assert FORMAT.split_response(response) == ("So the overall score is 2 at first. Then better.", "4")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (("1",), "needs at least two values"),
        (("1", "one", "two"), r"entries \['one', 'two'\] are not numbers"),
        (("1", "2", "2.0"), "lists the same score twice: '2' and '2.0'"),
    ],
)
def test_invalid_score_value_configurations_fail_at_start_naming_the_value(values, message):
    with pytest.raises(ValueError, match=message):
        ScoreFormat(values=values)
