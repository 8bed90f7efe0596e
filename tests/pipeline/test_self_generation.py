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

"""``tract generate``: sharded, resumable D_self generation with y* attached and a summary."""

import json

import pytest
import yaml

from llamafactory_tract.data.authors_rules import remove_reference_answer
from llamafactory_tract.data.score_format import ScoreFormat
from llamafactory_tract.judge.config import JudgeConfigError
from llamafactory_tract.judge.prompts import absolute_prompt
from llamafactory_tract.pipeline.self_generation import load_training_inputs, run_generation_config
from tests.helpers.judge_data import write_judge_dataset


@pytest.mark.slow
def test_sharded_generation_writes_d_self_when_the_last_shard_finishes(tiny_model_dirs, tmp_path):
    model_dir, template = tiny_model_dirs["tiktoken"]
    data_dir = write_judge_dataset(tmp_path / "data", rows=6)
    rows = json.loads((data_dir / "judge.json").read_text())
    rows[2]["output"] = "A response without any score."  # skipped, and counted as dropped
    (data_dir / "judge.json").write_text(json.dumps(rows))
    output = tmp_path / "generated" / "d_self.jsonl"
    config = tmp_path / "generate.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model_name_or_path": str(model_dir),
                "template": template,
                "backend": "hf",
                "max_new_tokens": 6,
                "batch_size": 4,
                "dataset": "judge",
                "dataset_dir": str(data_dir),
                "output": str(output),
                "num_shards": 2,
            }
        )
    )
    assert run_generation_config(config, ["shard_index=0"]) is None
    assert not output.exists(), "D_self must not appear before every shard is done"
    summary = run_generation_config(config, ["shard_index=1"])
    assert (summary.inputs, summary.written, summary.dropped_inputs) == (5, 5, 1)
    written = [json.loads(line) for line in output.read_text().splitlines()]
    # In training-set order, each with the ground-truth score of its input (never the model's own).
    expected = [ScoreFormat().split_response(row["output"])[1] for index, row in enumerate(rows) if index != 2]
    assert [ScoreFormat().split_response(row["output"])[1] for row in written] == expected
    assert [row["instruction"] for row in written] == [row["instruction"] for i, row in enumerate(rows) if i != 2]
    info = json.loads((output.parent / "dataset_info.json").read_text())
    assert info["tract_self"]["file_name"] == "d_self.jsonl"

    # An edited training row is sampled again (and only it); a corrected label needs no new CoT, only a new D_self.
    shard0 = output.with_name("d_self.generation.shard0of2.jsonl")
    lines_before = len(shard0.read_text().splitlines())
    rows[0]["instruction"] = "###Task Description: grade the edited response.\n"
    rows[4]["output"] = rows[4]["output"].rsplit(" ", 1)[0] + " 1"
    (data_dir / "judge.json").write_text(json.dumps(rows))
    summary = run_generation_config(config, ["shard_index=0"])
    assert summary is not None and summary.written == 5
    assert len(shard0.read_text().splitlines()) == lines_before + 1
    written = [json.loads(line) for line in output.read_text().splitlines()]
    assert written[0]["instruction"] == rows[0]["instruction"]
    assert ScoreFormat().split_response(written[3]["output"])[1] == "1"


def test_generate_config_errors_name_the_key(tmp_path):
    config = tmp_path / "generate.yaml"
    config.write_text(yaml.safe_dump({"model_name_or_path": "m", "template": "llama3", "output": "x.jsonl"}))
    with pytest.raises(JudgeConfigError, match=r"generate\.yaml: missing required key `dataset`"):
        run_generation_config(config)
    with pytest.raises(JudgeConfigError, match=r"`shard_index` must be below `num_shards` \(2\), got 2"):
        run_generation_config(config, ["dataset=judge", "num_shards=2", "shard_index=2"])


def test_remove_reference_samples_on_the_prompt_without_it_and_score_only_prompt_is_refused(tmp_path):
    prompts = [
        absolute_prompt("Add 2 and 2.", "4", "Correct?", "2 + 2 = 4."),
        absolute_prompt("Name a colour.", "Red.", "Correct?"),  # no reference: kept as it is
        absolute_prompt("Say hi.", "Hi.", "Polite?\n###Reference Answer: none"),  # cannot tell where it ends
    ]
    rows = [{"instruction": p, "output": f"Fine. So the overall score is {3 + i}"} for i, p in enumerate(prompts)]
    (tmp_path / "judge.json").write_text(json.dumps(rows))
    info = {"judge": {"file_name": "judge.json", "columns": {"prompt": "instruction", "response": "output"}}}
    (tmp_path / "dataset_info.json").write_text(json.dumps(info))
    inputs, skipped = load_training_inputs("judge", str(tmp_path), ScoreFormat(), remove_reference=True)
    assert [item.prompt.messages[0]["content"] for item in inputs] == [remove_reference_answer(prompts[0]), prompts[1]]
    assert "###Reference Answer" not in inputs[0].prompt.messages[0]["content"]
    assert [item.score for item in inputs] == ["3", "4"]
    assert len(skipped) == 1 and skipped[0].startswith("dataset 'judge' row 2: '###Reference Answer'")
    as_stored, _ = load_training_inputs("judge", str(tmp_path), ScoreFormat())
    assert [item.prompt.messages[0]["content"] for item in as_stored] == prompts
    assert as_stored[0].key != inputs[0].key  # a CoT sampled on the full prompt is never reused

    config = tmp_path / "generate.yaml"
    config.write_text(yaml.safe_dump({"model_name_or_path": "m", "template": "llama3", "dataset": "judge"}))
    with pytest.raises(JudgeConfigError, match="score_only_prompt is the prompt of score-only judges"):
        run_generation_config(config, ["predictor=rail", "score_only_prompt=true"])
