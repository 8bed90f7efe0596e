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

"""The TRACT authors' opt-in data rules: no-feedback prompt, reference removal, rows without the delimiter."""

import json
from pathlib import Path

import pytest
import yaml
from llamafactory.hparams import get_train_args

from llamafactory_tract.data.authors_rules import (
    NO_FEEDBACK_ENDING,
    NO_FEEDBACK_HEADER,
    AuthorsPromptRules,
    PromptSectionMissing,
    remove_reference_answer,
    to_no_feedback_prompt,
)
from llamafactory_tract.data.validation import InvalidTrainingData
from llamafactory_tract.eval.config import EvalConfigError, build_eval_config
from llamafactory_tract.judge.prediction_store import input_hash
from llamafactory_tract.judge.prompts import absolute_prompt
from tests.helpers.inference import real_rows, tiny_model_dir
from tests.helpers.judge_data import load_cotraft_data
from tests.helpers.paths import REPO_ROOT

RUBRIC = {"criteria": "Is it right?", **{f"score{level}_description": f"level {level}" for level in range(1, 6)}}
# The authors' no_feedback.prompt (finetuning_utils/prompts/feedback_collection/) filled in by hand.
AUTHORS_NO_FEEDBACK = """###Task Description:
An instruction (might include an Input inside it), a response to evaluate, a reference answer that gets a score of 5, \
and a score rubric representing an evaluation criterion is given.
1. Write a score betweeb 1 to 5 that assesses the quality of the response strictly based on the given score rubric, \
not evaluating in general.
2. The output format should look as follows: [RESULT] (an integer number between 1 and 5)
3. Please do not generate any other opening, closing, and explanations about the score.

###The instruction to evaluate:
Name a city.

###Response to evaluate:
Paris.

###Reference Answer (Score 5):
Lyon.

###Score Rubrics:
[Is it right?]
Score 1: level 1
Score 2: level 2
Score 3: level 3
Score 4: level 4
Score 5: level 5

###Score (an integer from 1 to 5):"""


def test_a_constructed_prompt_becomes_the_authors_no_feedback_prompt_to_the_character():
    prompt = absolute_prompt("Name a city.", "Paris.", RUBRIC, "Lyon.")
    assert to_no_feedback_prompt(prompt) == AUTHORS_NO_FEEDBACK
    assert to_no_feedback_prompt(AUTHORS_NO_FEEDBACK) == AUTHORS_NO_FEEDBACK  # already in that form
    without = remove_reference_answer(AUTHORS_NO_FEEDBACK)
    assert without == AUTHORS_NO_FEEDBACK.replace("###Reference Answer (Score 5):\nLyon.\n\n", "")
    assert remove_reference_answer(absolute_prompt("Name a city.", "Paris.", RUBRIC)) is None


def test_real_prometheus_prompts_keep_every_section_but_the_task_description_and_ending():
    for record in real_rows("vicuna_eval.json", 40):
        prompt = record["instruction"]
        body = prompt[prompt.index("###The instruction to evaluate:") :].rstrip().removesuffix("###Feedback:")
        rewritten = to_no_feedback_prompt(prompt)
        assert (
            rewritten == NO_FEEDBACK_HEADER.removesuffix("###The instruction to evaluate:") + body + NO_FEEDBACK_ENDING
        )
        both = AuthorsPromptRules(score_only_prompt=True, remove_reference=True).apply(prompt)
        assert both.rewritten and both.reference_removed
        assert "###Reference Answer" not in both.text and both.text.count("###Score Rubrics:\n[") == 1
        reference = prompt[prompt.rindex("###Reference Answer") : prompt.rindex("###Score Rubrics:")]
        assert both.text == rewritten.replace(reference, "")


def test_a_prompt_without_the_section_to_rewrite_is_refused_with_the_reason():
    with pytest.raises(PromptSectionMissing, match="no '###The instruction to evaluate:' section"):
        to_no_feedback_prompt("Grade this answer: Paris.")
    with pytest.raises(PromptSectionMissing, match="does not end with '###Feedback:'"):
        to_no_feedback_prompt("###The instruction to evaluate:\nName a city.\n\n###Answer:")
    with pytest.raises(PromptSectionMissing, match="comes after the last '###Score Rubrics:'"):
        remove_reference_answer("###Score Rubrics:\n[x]\n\n###Reference Answer (Score 5):\nLyon.")
    with pytest.raises(PromptSectionMissing, match="no '###Score Rubrics:' after"):
        remove_reference_answer("###Reference Answer (Score 5):\nLyon.\n\n###Feedback:")


# Training rows: FC-format prompts with and without a reference, one prompt in another format, CoTs with and
# without the delimiter.
WITH_REFERENCE = absolute_prompt("Name a city.", "Paris.", RUBRIC, "Lyon.")
WITHOUT_REFERENCE = absolute_prompt("Name a river.", "Seine.", RUBRIC)
JUDGE_ROWS = [
    {"instruction": WITH_REFERENCE, "output": "Correct. So the overall score is 4"},  # 0
    {"instruction": WITHOUT_REFERENCE, "output": "Feedback: fine. [RESULT] 3"},  # 1 no delimiter, no reference
    {"instruction": "Grade this answer: Paris.", "output": "Feedback: right. So the overall score is 5. [RESULT] 5"},
    {"instruction": WITH_REFERENCE, "output": "Feedback: wrong city. [RESULT] 1"},  # 3 no delimiter
    {"instruction": WITH_REFERENCE, "output": "Feedback: close. So the overall score is 2. [RESULT] 2"},  # 4
]


@pytest.fixture()
def dataset_dir(tmp_path):
    (tmp_path / "judge.json").write_text(json.dumps(JUDGE_ROWS))
    info = {"judge": {"file_name": "judge.json", "columns": {"prompt": "instruction", "response": "output"}}}
    (tmp_path / "dataset_info.json").write_text(json.dumps(info))
    return tmp_path


def load(tiny_model_dirs, dataset_dir, **overrides):
    overrides = {"dataset": "judge", "cutoff_len": 512, **overrides}
    tokenizer, _, module = load_cotraft_data(tiny_model_dirs["tiktoken"], dataset_dir, **overrides)
    return tokenizer, module


def test_rows_without_the_delimiter_are_dropped_counted_and_refused_when_strict(tiny_model_dirs, dataset_dir, caplog):
    _, module = load(tiny_model_dirs, dataset_dir)
    assert len(module["train_dataset"]) == 5  # default: every CoT is closed with the delimiter
    _, module = load(tiny_model_dirs, dataset_dir, cotraft_require_delimiter=True)
    assert sorted(module["train_dataset"]["score_target"]) == [2.0, 4.0, 5.0]
    assert (
        "Dropped 2 of 5 training rows without 'So the overall score is' in the response (cotraft_require_delimiter) "
        "instead of closing their CoT with it; first rows: dataset 'judge' row 1; dataset 'judge' row 3."
        in caplog.text
    )
    assert "2 of 5 training rows are invalid" in caplog.text
    with pytest.raises(InvalidTrainingData, match=r"dataset 'judge' row 1: no 'So the overall score is' in the resp"):
        load(tiny_model_dirs, dataset_dir, cotraft_require_delimiter=True, cotraft_strict_data=True)


def test_score_only_rows_get_the_no_feedback_prompt_without_reference_and_the_counts(
    tiny_model_dirs, dataset_dir, caplog
):
    tokenizer, module = load(
        tiny_model_dirs,
        dataset_dir,
        cotraft_drop_cot=True,
        score_only_prompt=True,
        remove_reference=True,
    )
    dataset = module["train_dataset"]
    assert sorted(dataset["score_target"]) == [1.0, 2.0, 3.0, 4.0]  # row 2 has no section to rewrite
    for example in dataset:
        text = tokenizer.decode(example["input_ids"])
        assert "1. Write a score betweeb 1 to 5" in text and NO_FEEDBACK_ENDING in text
        assert "###Reference Answer" not in text and "Lyon." not in text and "###Feedback:" not in text
    log = caplog.text
    assert "Rewrote 4 of 5 training prompts to the no-feedback form (score_only_prompt); the other 1" in log
    assert (
        "Removed the reference answer from 3 of 5 training prompts (remove_reference); 1 had none and are "
        "kept as they are (first: dataset 'judge' row 1); 1 are invalid rows, reported below." in log
    )
    assert "dataset 'judge' row 2: no '###The instruction to evaluate:' section to rewrite" in log


def test_the_rules_are_checked_against_the_rows_they_fit_at_start_up(tiny_model_dirs, dataset_dir):
    with pytest.raises(ValueError, match="set `cotraft_drop_cot: true` \\(Table 2 B.1, B.4\\)"):
        load(tiny_model_dirs, dataset_dir, score_only_prompt=True)
    with pytest.raises(ValueError, match="`cotraft_require_delimiter` selects rows by their CoT"):
        load(tiny_model_dirs, dataset_dir, cotraft_require_delimiter=True, cotraft_drop_cot=True)


def test_val_size_holds_out_an_evaluation_split_that_gets_the_same_rules(tiny_model_dirs, dataset_dir, caplog):
    _, module = load(tiny_model_dirs, dataset_dir, val_size=0.4, cotraft_drop_cot=True, remove_reference=True)
    assert len(module["train_dataset"]) + len(module["eval_dataset"]) == 5 and len(module["eval_dataset"]) == 2
    assert "of 2 evaluation prompts (remove_reference)" in caplog.text
    assert "of 3 training prompts (remove_reference)" in caplog.text


def test_a_training_run_with_the_rules_logs_their_counts(tiny_model_dirs, dataset_dir, caplog):
    from llamafactory.train.tuner import run_exp

    from tests.helpers.judge_data import sgd_full_finetune_config

    model_dir, _ = tiny_model_dirs["tiktoken"]
    output_dir = dataset_dir / "run"
    config = sgd_full_finetune_config(
        model_dir, dataset_dir, output_dir, max_steps=1, cotraft_require_delimiter=True, remove_reference=True
    )
    run_exp(config)
    assert json.loads((output_dir / "train_results.json").read_text())["epoch"] > 0
    assert "Dropped 2 of 5 training rows without 'So the overall score is'" in caplog.text
    assert "Removed the reference answer from 3 of 5 training prompts" in caplog.text


def benchmark_file(path: Path) -> Path:
    rows = real_rows("vicuna_eval.json", 3)
    path.write_text(json.dumps(rows))
    return path


def test_eval_with_score_only_prompt_scores_the_rewritten_prompt(tmp_path, caplog):
    from llamafactory_tract.cli import main

    source = benchmark_file(tmp_path / "vicuna.json")
    config = {
        "model_name_or_path": str(tiny_model_dir(tmp_path, "chatml")),
        "template": "chatml",
        "infer_dtype": "float32",
        "predictor": "rail",
        "score_only_prompt": True,
        "remove_reference": True,
        "output_dir": str(tmp_path / "out"),
        "benchmarks": {"vicuna_bench": {"path": str(source)}},
    }
    (tmp_path / "eval.yaml").write_text(yaml.safe_dump(config))
    assert main(["eval", str(tmp_path / "eval.yaml")]) == 0
    records = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    rules = AuthorsPromptRules(score_only_prompt=True, remove_reference=True)
    for record, row in zip(
        sorted(records, key=lambda record: record["row"]), json.loads(source.read_text()), strict=True
    ):
        truth = sum(row["gpt4_score"]) / len(row["gpt4_score"])
        expected = input_hash({"instruction": rules.apply(row["instruction"]).text, "ground_truth": truth})
        assert record["input_hash"] == expected
    assert "vicuna_bench: rewrote 3 of 3 prompts to the no-feedback form (score_only_prompt)." in caplog.text
    assert (
        "vicuna_bench: removed the reference answer from 3 of 3 prompts (remove_reference); 0 had none." in caplog.text
    )


def test_eval_refuses_the_score_only_prompt_with_a_cot_predictor_and_keys_predictions_by_it():
    base = {"model_name_or_path": "m", "template": "mistral"}
    with pytest.raises(EvalConfigError, match="predictor 'cot_rail' samples a CoT first: use predictor `decode`"):
        build_eval_config({**base, "score_only_prompt": True})
    keys = {
        build_eval_config({**base, "predictor": "rail", **rules}).prediction_hash()
        for rules in ({}, {"score_only_prompt": True}, {"remove_reference": True})
    }
    assert len(keys) == 3


AUTHORS_RULES_ROWS = sorted((REPO_ROOT / "yaml_configs" / "table2" / "authors_rules").glob("*.yaml"))


@pytest.mark.parametrize("row", AUTHORS_RULES_ROWS, ids=lambda path: path.stem)
def test_authors_rules_rows_resolve_through_llamafactory(row, tmp_path, monkeypatch):
    """Stage 1 parses with the no-feedback prompt on; evaluation adds the prompt and --remove; own run folder."""
    from llamafactory_tract.pipeline.config import load_pipeline_config
    from llamafactory_tract.pipeline.runner import judge_config, resolve_training_config

    monkeypatch.chdir(REPO_ROOT)
    model = REPO_ROOT / "yaml_configs" / "table2" / "models" / "mistral.yaml"
    config = load_pipeline_config([model, row])
    paper = load_pipeline_config([model, REPO_ROOT / "yaml_configs" / "table2" / "rows" / row.name])
    resolved = resolve_training_config(config, config.stage1, tmp_path / "stage1", {})
    _, data_args, _, finetuning_args, _ = get_train_args({**resolved, "bf16": False})
    assert data_args.cotraft_drop_cot and data_args.score_only_prompt
    assert not data_args.remove_reference  # the authors train with the reference, evaluate without
    assert finetuning_args.raft_lambda == paper.stage1.overrides.get("raft_lambda", 1.0)
    raw = yaml.safe_load(Path(config.evaluation.recipe).read_text())
    evaluation = judge_config(config, None, {**raw, **config.evaluation.overrides}, tmp_path / "eval")
    assert evaluation.score_only_prompt and evaluation.remove_reference
    assert evaluation.predictor == paper.evaluation.overrides["predictor"]
    assert config.run_dir != paper.run_dir and "authors_rules" in config.run_dir
