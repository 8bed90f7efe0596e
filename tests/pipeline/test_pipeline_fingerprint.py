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

"""A step's outputs are checked against the digests recorded when it completed (issue 22).

One real TRACT pipeline on a tiny random model is run once; every test edits a copy of it by hand
(the adapter retrained in place, D_self cut, a prediction changed) and checks that ``--status``
names the file and marks that step and every later one stale, and that a rerun redoes exactly
them (or ``--refuse-stale`` stops).
"""

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from llamafactory_tract.cli import main
from llamafactory_tract.pipeline.config import PipelineConfig, load_pipeline_config
from llamafactory_tract.pipeline.provenance import read_record, record_path, write_record
from llamafactory_tract.pipeline.runner import UNFINGERPRINTED, run_pipeline
from tests.pipeline.test_pipeline import pipeline_yaml, run_ids, states

pytestmark = pytest.mark.slow

STEPS = ("stage1", "self_generation", "stage2", "evaluation")


@pytest.fixture(scope="module")
def finished_run(tiny_model_dirs, tmp_path_factory) -> tuple[Path, Path]:
    """(pipeline YAML, run root) of one finished stage 1 -> D_self -> stage 2 -> evaluation run."""
    model_dir, _ = tiny_model_dirs["tiktoken"]
    root = tmp_path_factory.mktemp("finished")
    config_path = pipeline_yaml(root, model_dir, "seed", root / "tract")
    run_pipeline(load_pipeline_config([config_path]))
    return config_path, root


def copy_of(finished_run: tuple[Path, Path], tmp_path: Path) -> tuple[list[str], Path]:
    """The ``tract pipeline`` arguments of a private copy of the finished run (keys hold no paths), and its root."""
    config_path, root = finished_run
    copy = tmp_path / "run"
    shutil.copytree(root, copy)
    return [str(config_path), f"run_root={copy}"], copy


def config_of(args: list[str]) -> PipelineConfig:
    return load_pipeline_config(args[:1], args[1:])


def status_of(args: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, tuple[str, list[str]]]:
    """``tract pipeline --status`` as printed, read back as step -> (state, reasons)."""
    capsys.readouterr()  # what earlier commands printed
    assert main(["pipeline", *args, "--status"]) == 0
    steps: dict[str, tuple[str, list[str]]] = {}
    reasons: list[str] = []
    for line in capsys.readouterr().out.splitlines()[2:]:
        if line.startswith(" "):
            reasons.append(line.strip().removeprefix("- "))
        else:
            name, state = line.split()[:2]
            steps[name] = (state, reasons := [])
    assert tuple(steps) == STEPS
    return steps


def test_a_stage1_adapter_retrained_in_place_makes_every_step_stale(finished_run, tmp_path, capsys):
    args, run = copy_of(finished_run, tmp_path)
    stage1 = run / "shared" / "stage1"
    weights = stage1 / "adapter_model.safetensors"
    before = weights.read_bytes()
    # Issue 22's retrain: the recorded stage-1 YAML by hand with another learning rate, into the same folder.
    cli = Path(sys.executable).parent / "llamafactory-cli"
    subprocess.run(
        [str(cli), "train", str(run / "shared" / "stage1.yaml"), "learning_rate=5e-3", f"output_dir={stage1}"],
        check=True,
    )
    assert weights.read_bytes() != before

    steps = status_of(args, capsys)
    assert {name: state for name, (state, _) in steps.items()} == dict.fromkeys(STEPS, "stale")
    assert f"{weights} changed since the step wrote it" in steps["stage1"][1]
    assert steps["self_generation"][1] == ["upstream step `stage1` is not done"]
    assert steps["evaluation"][1] == ["upstream step `stage2` is not done"]

    recorded = run_ids(run)
    assert main(["pipeline", *args, "--refuse-stale"]) == 2
    error = capsys.readouterr().err
    assert "Stale steps" in error and f"{weights} changed since the step wrote it" in error
    assert run_ids(run) == recorded and weights.read_bytes() != before, "--refuse-stale ran something"


def test_d_self_cut_by_hand_is_rebuilt_and_every_later_step_redone(finished_run, tmp_path, capsys):
    args, run = copy_of(finished_run, tmp_path)
    d_self = run / "shared" / "d_self" / "d_self.jsonl"
    rows = d_self.read_text().splitlines()
    assert len(rows) == 8
    d_self.write_text("\n".join(rows[:4]) + "\n")

    steps = status_of(args, capsys)
    assert {name: state for name, (state, _) in steps.items()} == {
        "stage1": "done",
        "self_generation": "stale",
        "stage2": "stale",
        "evaluation": "stale",
    }
    assert steps["self_generation"][1] == [f"{d_self} changed since the step wrote it"]
    assert steps["stage2"][1] == ["upstream step `self_generation` is not done"]

    before = run_ids(run)
    assert main(["pipeline", *args]) == 0
    after = run_ids(run)
    assert after["stage1"] == before["stage1"]
    assert all(after[name] != before[name] for name in STEPS[1:])
    assert d_self.read_text().splitlines() == rows, "D_self was not rebuilt from its store"
    assert set(states(config_of(args)).values()) == {"done"}


def edit_first_prediction(predictions: Path) -> list[float]:
    """Give row 0 a better score under the same store key (a run resuming by row would keep it); returns
    the scores as predicted."""
    records = [json.loads(line) for line in predictions.read_text().splitlines()]
    edited = [{**records[0], "score": 5.0}, *records[1:]]
    predictions.write_text("".join(json.dumps(record) + "\n" for record in edited))
    return [record["score"] for record in records]


def scores(predictions: Path) -> list[float]:
    return [json.loads(line)["score"] for line in predictions.read_text().splitlines()]


def as_older_pipeline_wrote_it(output: Path) -> None:
    """Rewrite a step's record without the ``outputs`` field, as records were before output digests."""
    older = json.loads(record_path(output).read_text())
    del older["outputs"]
    record_path(output).write_text(json.dumps(older))


def test_an_edited_prediction_is_predicted_again(finished_run, tmp_path, capsys):
    args, run = copy_of(finished_run, tmp_path)
    predictions = run / "tract" / "eval" / "predictions.jsonl"
    predicted = edit_first_prediction(predictions)

    steps = status_of(args, capsys)
    assert {name: state for name, (state, _) in steps.items()} == {
        **dict.fromkeys(STEPS[:3], "done"),
        "evaluation": "stale",
    }
    assert steps["evaluation"][1] == [f"{predictions} changed since the step wrote it"]

    before = run_ids(run)
    assert main(["pipeline", *args]) == 0
    after = run_ids(run)
    assert [name for name in STEPS if after[name] != before[name]] == ["evaluation"]
    assert scores(predictions) == pytest.approx(predicted)
    assert set(states(config_of(args)).values()) == {"done"}


def test_records_without_output_digests(finished_run, tmp_path, capsys):
    """A record left `running` by a pipeline stopped just after its child finished is completed with digests,
    not redone; a complete one from before digests existed is stale, since nothing on disk can be checked."""
    args, run = copy_of(finished_run, tmp_path)
    evaluation = run / "tract" / "eval"
    complete = read_record(evaluation)
    write_record(evaluation, replace(complete, state="running", finished=None, outputs=None))
    assert set(states(config_of(args)).values()) == {"done"}
    before = run_ids(run)
    assert main(["pipeline", *args]) == 0
    adopted = read_record(evaluation)
    assert run_ids(run) == before and adopted.state == "complete" and adopted.outputs == complete.outputs
    (evaluation / "metrics.csv").unlink()
    assert status_of(args, capsys)["evaluation"] == (
        "stale",
        [f"{evaluation / 'metrics.csv'} was removed since the step wrote it"],
    )

    # A prediction edited under an older pipeline's record is not certified by the upgrade: predicted again.
    predictions = evaluation / "predictions.jsonl"
    predicted = edit_first_prediction(predictions)
    as_older_pipeline_wrote_it(evaluation)
    assert status_of(args, capsys)["evaluation"] == ("stale", [UNFINGERPRINTED])
    assert main(["pipeline", *args]) == 0
    assert scores(predictions) == pytest.approx(predicted) and read_record(evaluation).outputs is not None

    for output in (run / "shared" / "stage1", run / "shared" / "d_self" / "d_self.jsonl", run / "tract" / "stage2"):
        as_older_pipeline_wrote_it(output)
    steps = status_of(args, capsys)
    assert steps["stage1"] == ("stale", [UNFINGERPRINTED])
    assert steps["stage2"] == ("stale", ["upstream step `self_generation` is not done", UNFINGERPRINTED])
