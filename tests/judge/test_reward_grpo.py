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

"""The judge as TRL's GRPO reward: two GRPO steps of a tiny random policy, rewarded by a tiny judge on CPU."""

import math

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from llamafactory_tract.compat.trl_internals import grpo_classes, grpo_ready
from llamafactory_tract.judge.api import TractJudge
from llamafactory_tract.judge.reward import TractReward, unit_score
from tests.helpers.judge import FAMILY, ROWS, RUBRIC, tiny_judge

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def judge(tiny_model_dirs) -> TractJudge:
    return tiny_judge(*tiny_model_dirs[FAMILY])


@pytest.fixture(scope="module")
def grpo():
    """TRL's ``GRPOConfig`` and ``GRPOTrainer`` as a user imports them here (``compat/trl_internals.py``)."""
    return grpo_classes()


def test_two_grpo_steps_are_rewarded_with_the_judges_expected_scores(judge, grpo, tiny_model_dirs, tmp_path):
    from datasets import Dataset

    GRPOConfig, GRPOTrainer = grpo
    model_dir = tiny_model_dirs[FAMILY][0]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.chat_template = CHATML
    policy = grpo_ready(AutoModelForCausalLM.from_pretrained(model_dir))
    dataset = Dataset.from_list(
        [
            {"prompt": [{"role": "user", "content": row["instruction"]}], "reference_answer": row["reference_answer"]}
            for row in ROWS[:2]
        ]
    )
    reward = TractReward(judge, RUBRIC)
    calls = []

    def recording_reward(**kwargs):
        rewards = reward(**kwargs)
        calls.append((kwargs, rewards))
        return rewards

    recording_reward.__name__ = reward.__name__
    args = GRPOConfig(
        output_dir=str(tmp_path),
        max_steps=2,
        per_device_train_batch_size=2,
        num_generations=2,
        max_prompt_length=64,
        max_completion_length=4,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        bf16=False,
        seed=0,
    )
    trainer = GRPOTrainer(
        model=policy, reward_funcs=[recording_reward], args=args, train_dataset=dataset, processing_class=tokenizer
    )
    trainer.train()

    assert trainer.state.global_step == 2 and len(calls) == 2
    logged = [
        entry["rewards/tract_judge/mean"] for entry in trainer.state.log_history if "rewards/tract_judge/mean" in entry
    ]
    assert len(logged) == 2
    for (kwargs, rewards), logged_mean in zip(calls, logged, strict=True):
        completions = kwargs["completions"]
        assert len(rewards) == len(completions) == 2
        # The reward saw the trainer's own completions: the text TRL decoded from the sampled ids.
        for completion, ids in zip(completions, kwargs["completion_ids"], strict=True):
            assert completion[-1]["content"] == tokenizer.decode(ids, skip_special_tokens=True)
        assert all(math.isfinite(value) and 1 <= value <= 5 for value in rewards)
        assert logged_mean == pytest.approx(sum(rewards) / len(rewards), abs=1e-5)
        direct = judge.absolute_grade(
            instructions=[prompt[-1]["content"] for prompt in kwargs["prompts"]],
            responses=[completion[-1]["content"] for completion in completions],
            rubric=RUBRIC,
            reference_answers=kwargs["reference_answer"],
        )
        assert rewards == pytest.approx([grade.score for grade in direct], abs=1e-5)


def test_rubrics_come_from_the_dataset_and_rows_without_one_get_none(judge):
    prompts = [row["instruction"] for row in ROWS[:2]]
    completions = [row["response"] for row in ROWS[:2]]
    with pytest.raises(ValueError, match="no rubric"):
        TractReward(judge)(prompts=prompts, completions=completions)
    per_row = TractReward(judge, unit_interval=True, name="judge_unit")
    rewards = per_row(prompts=prompts, completions=completions, completion_ids=[[1], [2]], rubric=[RUBRIC, None])
    score = judge.single_absolute_grade(prompts[0], completions[0], RUBRIC).score
    assert per_row.__name__ == "judge_unit"
    assert rewards[1] is None and rewards[0] == pytest.approx(unit_score(score, judge.values)) == (score - 1) / 4
    conversation = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": prompts[0]}]
    answer = [{"role": "assistant", "content": completions[0]}]
    fixed = TractReward(judge, RUBRIC)(prompts=[conversation], completions=[answer], reference_answer=[""])
    assert fixed == pytest.approx([score])
