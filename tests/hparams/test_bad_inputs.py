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

"""Bad inputs end with one message naming the file/row/column/key and what to do, and exit status 2.

One test per bad input that used to end in a library traceback (issue 22). ``llamafactory-cli train``
runs through its console entry point (``llamafactory.cli.main``) in this process with ``sys.argv`` set,
once in a subprocess; ``tract`` through ``llamafactory_tract.cli.main``. Every failure here comes before
a model is loaded; the tiny model's tokenizer is loaded where the data is read (LLaMA-Factory's order).
The ``TORCHDYNAMO_DISABLE=1`` + vLLM row is in ``test_no_leftover_processes.py`` (it needs an engine).
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from llamafactory_tract.cli import main as tract
from llamafactory_tract.extras.errors import DEBUG_ENV, USER_ERROR_EXIT, TractUserError
from tests.helpers.judge_data import load_cotraft_data, write_judge_dataset
from tests.helpers.paths import REPO_ROOT

VENV_BIN = Path(sys.executable).parent
SMOKE_RECIPE = REPO_ROOT / "yaml_configs" / "cpu" / "cotraft_smoke.yaml"
TRAIN = f"llamafactory-cli train {SMOKE_RECIPE}: error: "


@pytest.fixture()
def model_dir(tiny_model_dirs) -> Path:
    return tiny_model_dirs["tiktoken"][0]


def llamafactory_cli_train(monkeypatch, capsys, *overrides: str) -> tuple[int, str]:
    """``llamafactory-cli train <smoke recipe> key=value ...``: (exit status, stderr)."""
    from llamafactory.cli import main as llamafactory_cli

    monkeypatch.setattr(sys, "argv", ["llamafactory-cli", "train", str(SMOKE_RECIPE), *overrides])
    with pytest.raises(SystemExit) as stopped:
        llamafactory_cli()
    return stopped.value.code, capsys.readouterr().err


def train_args(model_dir: Path, data_dir: Path, tmp_path: Path, **extra) -> list[str]:
    values = {"model_name_or_path": model_dir, "dataset_dir": data_dir, "output_dir": tmp_path / "out", **extra}
    return [f"{key}={value}" for key, value in values.items()]


def one_message(stderr: str, prefix: str) -> str:
    """The error line (asserting there is no traceback); its text after ``prefix``."""
    assert "Traceback" not in stderr, stderr[-3000:]
    line = stderr.strip().splitlines()[-1]
    assert line.startswith(prefix), stderr[-3000:]
    return line.removeprefix(prefix)


def rewrite_dataset(data_dir: Path, rows=None, raw: bytes | None = None, **columns: str) -> Path:
    """The ``judge`` dataset of ``write_judge_dataset`` with other rows (or bytes) and column mappings."""
    file = data_dir / "judge.json"
    if raw is not None:
        file.write_bytes(raw)
    elif rows is not None:
        file.write_text(json.dumps(rows))
    info = json.loads((data_dir / "dataset_info.json").read_text())
    info["judge"]["columns"].update(columns)
    (data_dir / "dataset_info.json").write_text(json.dumps(info))
    return data_dir


def scored_rows(data_dir: Path) -> list[dict]:
    """The judge rows with the score moved into a column of its own (``columns.score``)."""
    rows = json.loads((data_dir / "judge.json").read_text())
    for row in rows:
        feedback, _, score = row["output"].replace(" [RESULT] ", " So the overall score is ").rpartition(" So the ")
        row["output"], row["score"] = feedback, int(score[-1])
    return rows


# --- llamafactory-cli train (stage: cotraft) ------------------------------------------------------


def test_a_dataset_info_column_missing_from_the_file_is_named(model_dir, tmp_path, monkeypatch, capsys):
    data_dir = rewrite_dataset(write_judge_dataset(tmp_path / "data"), response="outptu")
    code, err = llamafactory_cli_train(monkeypatch, capsys, *train_args(model_dir, data_dir, tmp_path))
    assert code == USER_ERROR_EXIT
    assert one_message(err, TRAIN) == (
        f"Dataset 'judge.json' ('judge' in {data_dir / 'dataset_info.json'}): `columns.response` names the "
        f"response column 'outptu', which is not in the data ({data_dir / 'judge.json'} has: instruction, "
        "output). Fix the name in dataset_info.json."
    )


def test_a_score_column_mixing_numbers_and_strings_is_named_with_its_rows(model_dir, tmp_path, monkeypatch, capsys):
    data_dir = write_judge_dataset(tmp_path / "data")
    rows = scored_rows(data_dir)
    rows[3]["score"] = str(rows[3]["score"])
    rewrite_dataset(data_dir, rows, score="score")
    code, err = llamafactory_cli_train(monkeypatch, capsys, *train_args(model_dir, data_dir, tmp_path))
    assert code == USER_ERROR_EXIT
    assert one_message(err, TRAIN) == (
        f"{data_dir / 'judge.json'}: column 'score' mixes a number (first at row 0) and a string (first at row 3) "
        "(rows counted from 0), and datasets loads a column of one type only: write every 'score' value as a "
        'number (3, not "3").'
    )


def test_a_model_path_that_does_not_exist_stops_before_loading(tmp_path, monkeypatch, capsys):
    data_dir = write_judge_dataset(tmp_path / "data")
    missing = tmp_path / "no_such_model"
    code, err = llamafactory_cli_train(monkeypatch, capsys, *train_args(missing, data_dir, tmp_path))
    assert code == USER_ERROR_EXIT
    assert one_message(err, TRAIN) == (
        f"`model_name_or_path`: {missing} does not exist here (and is not a Hugging Face Hub id). Check the path."
    )


def test_a_score_value_that_is_not_a_number_is_named_at_parse_time(model_dir, tmp_path, monkeypatch, capsys):
    data_dir = write_judge_dataset(tmp_path / "data")
    overrides = train_args(model_dir, data_dir, tmp_path, score_values="1,2,x")
    code, err = llamafactory_cli_train(monkeypatch, capsys, *overrides)
    assert code == USER_ERROR_EXIT
    assert one_message(err, TRAIN) == "`score_values` entries ['x'] are not numbers (in ['1', '2', 'x'])."


def test_a_cotraft_key_under_another_stage_is_refused_naming_key_and_stage(model_dir, tmp_path, monkeypatch, capsys):
    data_dir = write_judge_dataset(tmp_path / "data")
    code, err = llamafactory_cli_train(monkeypatch, capsys, *train_args(model_dir, data_dir, tmp_path, stage="sft"))
    assert code == USER_ERROR_EXIT
    assert one_message(err, TRAIN) == (
        "`cotraft_effective_batch_size`, `raft_lambda` are keys of `stage: cotraft`, but this run has `stage: sft`, "
        "which would ignore them: set `stage: cotraft`, or remove them."
    )


def test_an_empty_training_file_is_named(model_dir, tmp_path, monkeypatch, capsys):
    data_dir = rewrite_dataset(write_judge_dataset(tmp_path / "data"), rows=[])
    code, err = llamafactory_cli_train(monkeypatch, capsys, *train_args(model_dir, data_dir, tmp_path))
    assert code == USER_ERROR_EXIT
    assert one_message(err, TRAIN) == (
        f"{data_dir / 'judge.json'} (dataset 'judge') has no rows: add training rows, or remove 'judge' from "
        "`dataset` / `eval_dataset`."
    )


def test_a_training_file_that_is_not_utf8_is_named_with_line_and_column(model_dir, tmp_path, monkeypatch, capsys):
    data_dir = write_judge_dataset(tmp_path / "data")
    text = (data_dir / "judge.json").read_text().replace("time management", "Zeitplänung", 1)
    rewrite_dataset(data_dir, raw=text.encode("latin-1"))
    offset = text.encode("latin-1").index("ä".encode("latin-1"))
    code, err = llamafactory_cli_train(monkeypatch, capsys, *train_args(model_dir, data_dir, tmp_path))
    assert code == USER_ERROR_EXIT
    file = data_dir / "judge.json"
    assert one_message(err, TRAIN) == (
        f"{file} is not UTF-8 text: byte 0xe4 at line 1, column {offset + 1} (byte offset {offset}) cannot be "
        f"decoded (invalid continuation byte). Re-save the file as UTF-8, e.g. from Latin-1: iconv -f latin1 -t "
        f"utf-8 {file} > utf8_copy"
    )


@pytest.mark.parametrize(
    ("key", "value", "kind"),
    [
        ("raft_lambda", "abc", "a number (default: 1.0)"),
        ("cotraft_min_prompt_share", "abc", "a number (default: 0.5)"),
    ],
)
def test_a_key_of_the_wrong_type_is_named_from_an_override(model_dir, tmp_path, monkeypatch, capsys, key, value, kind):
    data_dir = write_judge_dataset(tmp_path / "data")
    overrides = train_args(model_dir, data_dir, tmp_path, **{key: value})
    code, err = llamafactory_cli_train(monkeypatch, capsys, *overrides)
    assert code == USER_ERROR_EXIT
    assert one_message(err, TRAIN) == (
        f"`{key}` must be {kind}, got '{value}': fix `{key}` in the YAML or its {key}=... override."
    )


def test_a_key_of_the_wrong_type_in_the_yaml_exits_2_from_the_real_console_script(model_dir, tmp_path):
    """``raft_lambda: "abc"`` in a YAML, through the installed ``llamafactory-cli``; ``TRACT_DEBUG=1``: traceback."""
    recipe = yaml.safe_load(SMOKE_RECIPE.read_text())
    data_dir = write_judge_dataset(tmp_path / "data")
    recipe.update(model_name_or_path=str(model_dir), dataset_dir=str(data_dir), output_dir=str(tmp_path / "out"))
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump({**recipe, "raft_lambda": "abc"}))
    environment = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
    run = [str(VENV_BIN / "llamafactory-cli"), "train", str(config)]
    result = subprocess.run(run, capture_output=True, text=True, env=environment, timeout=300, cwd=REPO_ROOT)
    assert result.returncode == USER_ERROR_EXIT, result.stderr[-3000:]
    assert one_message(result.stderr, f"llamafactory-cli train {config}: error: ") == (
        "`raft_lambda` must be a number (default: 1.0), got 'abc': fix `raft_lambda` in the YAML or its "
        "raft_lambda=... override."
    )
    assert "TypeError" not in result.stderr


def test_the_debug_switch_shows_the_traceback(model_dir, tmp_path, monkeypatch):
    from llamafactory.cli import main as llamafactory_cli

    monkeypatch.setenv(DEBUG_ENV, "1")
    data_dir = write_judge_dataset(tmp_path / "data")
    argv = [
        "llamafactory-cli",
        "train",
        str(SMOKE_RECIPE),
        *train_args(model_dir, data_dir, tmp_path, raft_lambda="x"),
    ]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(TractUserError, match="`raft_lambda` must be a number"):
        llamafactory_cli()


def test_streaming_with_no_dataloader_workers_trains(model_dir, tmp_path, monkeypatch, capsys):
    """LLaMA-Factory streams a local file in `dataloader_num_workers` (default 0) shards, i.e. none: `cotraft`
    reads it as one shard instead of stopping on a bare StopIteration."""
    from llamafactory.cli import main as llamafactory_cli

    data_dir = write_judge_dataset(tmp_path / "data")
    overrides = train_args(model_dir, data_dir, tmp_path, streaming="true", max_steps=2)
    monkeypatch.setattr(sys, "argv", ["llamafactory-cli", "train", str(SMOKE_RECIPE), *overrides])
    llamafactory_cli()
    log = [json.loads(line) for line in (tmp_path / "out" / "trainer_log.jsonl").read_text().splitlines()]
    assert [entry["current_steps"] for entry in log if "ce_loss" in entry] == [1, 2]
    assert all(math.isfinite(entry["raft_loss"]) for entry in log if "raft_loss" in entry)


def test_an_output_dir_that_cannot_be_created_stops_training_before_loading(model_dir, tmp_path, monkeypatch, capsys):
    data_dir = write_judge_dataset(tmp_path / "data")
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    overrides = train_args(model_dir, data_dir, tmp_path, output_dir=blocker / "out")
    code, err = llamafactory_cli_train(monkeypatch, capsys, *overrides)
    assert code == USER_ERROR_EXIT
    assert one_message(err, TRAIN) == (
        f"`output_dir`: {blocker / 'out'} cannot be created: {blocker} is a file, not a folder. Choose another "
        f"`output_dir` (or move {blocker} away)."
    )


def test_an_empty_score_cell_is_dropped_with_its_own_reason(tiny_model_dirs, tmp_path, caplog):
    data_dir = write_judge_dataset(tmp_path / "data")
    rows = scored_rows(data_dir)
    rows[2]["score"] = math.nan  # json.dumps writes NaN, which datasets reads as null
    rewrite_dataset(data_dir, rows, score="score")
    _, _, module = load_cotraft_data(tiny_model_dirs["tiktoken"], data_dir, dataset="judge")
    assert len(module["train_dataset"]) == len(rows) - 1
    reason = "empty score: column 'score' has no value in this row (null, NaN or blank); give it one of score_values"
    assert f"dataset 'judge' row 2: {reason} ['1', '2', '3', '4', '5']" in caplog.text
    assert "missing score" not in caplog.text


# --- tract ---------------------------------------------------------------------------------------


def eval_config(path: Path, model: str, benchmark: Path, output_dir: Path) -> str:
    config = {"model_name_or_path": model, "template": "llama3", "max_new_tokens": 4, "output_dir": str(output_dir)}
    path.write_text(yaml.safe_dump({**config, "benchmarks": {"mt_bench": {"path": str(benchmark)}}}))
    return str(path)


def benchmark_file(path: Path, rows: int = 3, encoding: str = "utf-8") -> Path:
    records = [{"instruction": f"Judge answer {index}: 12 äpples.", "gpt4_score": [4, 5]} for index in range(rows)]
    path.write_bytes(json.dumps(records, ensure_ascii=False).encode(encoding))
    return path


def test_tract_generate_names_a_dataset_info_column_missing_from_the_file(model_dir, tmp_path, capsys):
    data_dir = rewrite_dataset(write_judge_dataset(tmp_path / "data"), response="outptu")
    config = tmp_path / "generate.yaml"
    config.write_text(yaml.safe_dump({"model_name_or_path": str(model_dir), "template": "llama3", "dataset": "judge"}))
    code = tract(["generate", str(config), f"dataset_dir={data_dir}", f"output={tmp_path / 'd_self.jsonl'}"])
    assert code == USER_ERROR_EXIT
    assert "`columns.response` names the response column 'outptu', which is not in the data" in one_message(
        capsys.readouterr().err, "tract generate: error: Dataset 'judge.json' "
    )


def test_tract_eval_names_a_model_that_is_neither_a_folder_nor_in_the_offline_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = eval_config(tmp_path / "eval.yaml", "saves/no-such-model", benchmark_file(tmp_path / "b.json"), tmp_path)
    assert tract(["eval", config]) == USER_ERROR_EXIT
    assert one_message(capsys.readouterr().err, "tract eval: error: ") == (
        "`model_name_or_path`: saves/no-such-model does not exist here, and the Hub id saves/no-such-model is not "
        "in the Hugging Face cache (HF_HUB_OFFLINE is set). Check the path, or download it first "
        "(huggingface-cli download saves/no-such-model)."
    )


def test_tract_eval_names_a_benchmark_file_that_is_not_utf8(model_dir, tmp_path, capsys):
    benchmark = benchmark_file(tmp_path / "bench.json", rows=200, encoding="latin-1")
    offset = benchmark.read_bytes().index(b"\xe4")
    config = eval_config(tmp_path / "eval.yaml", str(model_dir), benchmark, tmp_path / "out")
    assert tract(["eval", config]) == USER_ERROR_EXIT
    assert one_message(capsys.readouterr().err, "tract eval: error: ") == (
        f"{benchmark} is not UTF-8 text: byte 0xe4 at line 1, column {offset + 1} (byte offset {offset}) cannot be "
        f"decoded (invalid continuation byte). Re-save the file as UTF-8, e.g. from Latin-1: iconv -f latin1 -t "
        f"utf-8 {benchmark} > utf8_copy"
    )


def test_tract_eval_refuses_an_output_dir_that_cannot_be_created_before_the_model(tmp_path, capsys):
    """The model path does not exist either: the output folder is checked first, before anything loads."""
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    config = eval_config(tmp_path / "e.yaml", str(tmp_path / "absent"), benchmark_file(tmp_path / "b.json"), blocker)
    assert tract(["eval", config, f"output_dir={blocker / 'run'}"]) == USER_ERROR_EXIT
    assert one_message(capsys.readouterr().err, "tract eval: error: ") == (
        f"`output_dir`: {blocker / 'run'} cannot be created: {blocker} is a file, not a folder. Choose another "
        f"`output_dir` (or move {blocker} away)."
    )
