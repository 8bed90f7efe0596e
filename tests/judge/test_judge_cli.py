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

"""``tract judge`` on a user's CSV / JSONL: column mapping, skipped rows, outputs, resuming, config errors."""

import csv
import json
import re
import subprocess
import sys

import pytest

from llamafactory_tract.cli import main
from llamafactory_tract.eval.config import build_eval_config
from llamafactory_tract.judge.api import TractJudge, prompt_key
from llamafactory_tract.judge.prompts import absolute_prompt, format_rubric
from tests.helpers.judge import FAMILY, ROWS, RUBRIC, settings_overrides, tiny_judge


@pytest.fixture(scope="module")
def judge_setup(tiny_model_dirs):
    model_dir, template = tiny_model_dirs[FAMILY]
    judge = tiny_judge(model_dir, template)
    reference = judge.absolute_grade(
        instructions=[row["instruction"] for row in ROWS],
        responses=[row["response"] for row in ROWS],
        rubric=RUBRIC,
        reference_answers=[row["reference_answer"] for row in ROWS],
    )
    return settings_overrides(model_dir, template), reference, judge


def _row(uid: str, row: dict) -> dict:
    return {"uid": uid, "question": row["instruction"], "answer": row["response"], "gold": row["reference_answer"]}


def _write_csv(path, rows):
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_csv_with_own_column_names_grades_skips_bad_rows_and_resumes(tmp_path, judge_setup, capsys):
    """Row 1 lacks its response (skipped); row 3 its reference answer (graded with the reference-free prompt)."""
    overrides, reference, judge = judge_setup
    rubric = format_rubric(RUBRIC)
    rows = [
        {
            "uid": "a",
            "question": ROWS[0]["instruction"],
            "answer": ROWS[0]["response"],
            "gold": ROWS[0]["reference_answer"],
        },
        {"uid": "b", "question": "Missing answer.", "answer": "", "gold": "x"},
        {
            "uid": "c",
            "question": ROWS[1]["instruction"],
            "answer": ROWS[1]["response"],
            "gold": ROWS[1]["reference_answer"],
        },
        {"uid": "d", "question": "No reference.", "answer": "y", "gold": "  "},
        {
            "uid": "e",
            "question": ROWS[2]["instruction"],
            "answer": ROWS[2]["response"],
            "gold": ROWS[2]["reference_answer"],
        },
    ]
    source = _write_csv(tmp_path / "mine.csv", [{**row, "rubric": rubric} for row in rows])
    output = tmp_path / "out" / "grades.csv"
    command = [
        "judge",
        *overrides,
        f"input={source}",
        f"output={output}",
        "columns.instruction=question",
        "columns.response=answer",
        "columns.reference_answer=gold",
        "keep_columns=[uid]",
    ]
    assert main(command) == 0
    printed = capsys.readouterr().out
    assert "Graded 4 rows" in printed
    assert "Skipped 1 rows: row 1: `answer` is empty" in printed
    assert "1 rows had no reference: graded with the reference-free prompt (rows 3)" in printed
    graded = list(csv.DictReader(output.open()))
    assert [(line["row"], line["uid"]) for line in graded] == [("0", "a"), ("2", "c"), ("3", "d"), ("4", "e")]
    assert set(graded[0]) >= {"score", "decoded_score", "prob_1", "prob_5", "cot_1", "cot_2", "closed_by"}
    assert b"\r\n" not in output.read_bytes()  # \n line ends, as the JSONL output and every tool here
    for line in graded:  # prob_* are the distribution the score is the expectation of; the mass is beside it
        probs = [float(line[f"prob_{value}"]) for value in range(1, 6)]
        assert sum(probs) == pytest.approx(1.0)
        expectation = sum(value * p for value, p in zip(range(1, 6), probs, strict=True))
        assert expectation == pytest.approx(float(line["score"]))
        assert 0 < float(line["score_mass"]) < 1 and line["low_score_mass"] == "True"
        assert float(line["score_unnormalized"]) < 1 <= float(line["score"])
    assert "4 grades have low_score_mass (score tokens below 0.5 of the model's mass" in printed
    # The same rows through the Python API (same judge settings and seed) give the same expected scores.
    no_reference = judge.single_absolute_grade("No reference.", "y", rubric)
    for line, grade in zip(graded, [*reference[:2], no_reference, reference[2]], strict=True):
        assert float(line["score"]) == pytest.approx(grade.score, abs=1e-5)
        assert [line["cot_1"], line["cot_2"]] == grade.cots

    # Resume: keep one graded row and a line cut short; only the three missing rows are graded again.
    progress = output.with_name("grades.csv.progress.jsonl")
    kept = progress.read_text().splitlines()[0]
    progress.write_text(kept + "\n" + kept[:40])
    output.unlink()
    assert main(command) == 0
    assert len(progress.read_text().splitlines()) == 2 + 3
    resumed = list(csv.DictReader(output.open()))
    assert [line["cot_1"] for line in resumed] == [line["cot_1"] for line in graded]
    assert [float(line["score"]) for line in resumed] == pytest.approx([float(line["score"]) for line in graded])


def test_input_without_a_gradable_row_exits_non_zero_with_the_report(tmp_path, judge_setup, capsys):
    overrides, _, _ = judge_setup
    source = _write_csv(
        tmp_path / "bad.csv",
        [{"question": "Q?", "answer": "", "rubric": "R"}, {"question": "", "answer": "A", "rubric": "R"}],
    )
    output = tmp_path / "grades.jsonl"
    assert (
        main(
            [
                "judge",
                *overrides,
                f"input={source}",
                f"output={output}",
                "columns.instruction=question",
                "columns.response=answer",
            ]
        )
        == 2
    )
    error = capsys.readouterr().err
    assert (
        f"none of the 2 rows of {source} can be graded: row 0: `answer` is empty; row 1: `question` is empty" in error
    )
    assert not output.exists()


def test_jsonl_with_criteria_columns_writes_jsonl(tmp_path, judge_setup, capsys):
    overrides, _, judge = judge_setup
    rubric_columns = {f"orig_{key}": value for key, value in RUBRIC.items()}
    lines = [
        json.dumps({"orig_instruction": row["instruction"], "orig_response": row["response"], **rubric_columns})
        for row in ROWS[:2]
    ]
    lines.insert(1, "{not json")
    source = tmp_path / "rows.jsonl"
    source.write_text("\n".join(lines) + "\n")
    mapping = [f"columns.{key}=orig_{key}" for key in ("instruction", "response", *RUBRIC)]
    output = tmp_path / "grades.jsonl"
    assert main(["judge", *overrides, f"input={source}", f"output={output}", *mapping]) == 0
    assert "Skipped 1 rows: row 1: not valid JSON" in capsys.readouterr().out
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert [record["row"] for record in records] == [0, 2]
    assert all(len(record["cots"]) == len(record["score_probs"]) == 2 for record in records)
    # Criteria columns build the same prompt as the API's rubric mapping (no reference answer here).
    grades = judge.absolute_grade(
        instructions=[row["instruction"] for row in ROWS[:2]],
        responses=[row["response"] for row in ROWS[:2]],
        rubric=RUBRIC,
    )
    assert [record["score"] for record in records] == pytest.approx([grade.score for grade in grades], abs=1e-5)


def test_a_row_the_authors_rules_cannot_rewrite_is_skipped_by_file_row(tmp_path, judge_setup, capsys):
    """With score_only_prompt + remove_reference, a row without a reference whose rubric quotes the reference
    header cannot be rewritten: it is skipped as its file row, and the other rows grade as in a file without it."""
    overrides, _, judge = judge_setup
    rules = ["predictor=rail", "score_only_prompt=true", "remove_reference=true"]
    rubric = format_rubric(RUBRIC)
    good = [{"instruction": row["instruction"], "response": row["response"], "rubric": rubric} for row in ROWS]
    bad = {**good[0], "rubric": rubric + "\nScore 5 only if it matches the ###Reference Answer."}

    def grade(name: str, rows: list[dict]) -> list[dict]:
        source = tmp_path / f"{name}.jsonl"
        source.write_text("".join(json.dumps(row) + "\n" for row in rows))
        output = tmp_path / f"{name}_grades.jsonl"
        assert main(["judge", *overrides, *rules, f"input={source}", f"output={output}"]) == 0
        return [json.loads(line) for line in output.read_text().splitlines()]

    with_bad = grade("with_bad", [good[0], bad, *good[1:]])
    printed = capsys.readouterr().out
    assert "Graded 3 rows" in printed
    assert (
        "Skipped 1 rows: row 1: score_only_prompt + remove_reference cannot rewrite its prompt: "
        "'###Reference Answer' comes after the last '###Score Rubrics:'" in printed
    )
    assert [record.pop("row") for record in with_bad] == [0, 2, 3]
    without_bad = grade("without_bad", good)
    assert [record.pop("row") for record in without_bad] == [0, 1, 2]
    assert with_bad == without_bad
    # Rewritten once, by the judge, as the Python API does; keyed by the prompt as built.
    config = {**judge.config.model_dump(), "predictor": "rail", "score_only_prompt": True, "remove_reference": True}
    rules_judge = TractJudge.from_config(build_eval_config(config, source="test"))
    prompts = [absolute_prompt(row["instruction"], row["response"], RUBRIC) for row in ROWS]
    try:
        grades = rules_judge.grade_prompts(prompts)
    finally:
        rules_judge.close()
    assert [record["score_probs"] for record in with_bad] == [grade.score_probs for grade in grades]
    stored = tmp_path / "with_bad_grades.jsonl.progress.jsonl"
    keys = {json.loads(line)["row"]: json.loads(line)["input_hash"] for line in stored.read_text().splitlines()}
    assert keys == {row: prompt_key(prompt) for row, prompt in zip([0, 2, 3], prompts, strict=True)}


def test_config_errors_name_the_problem(tmp_path, judge_setup, capsys):
    overrides, _, _ = judge_setup
    source = _write_csv(tmp_path / "rows.csv", [{"instruction": "q", "response": "a"}])
    assert main(["judge", *overrides, f"input={source}", f"output={tmp_path / 'g.csv'}"]) == 2
    assert "no rubric" in capsys.readouterr().err
    assert main(["judge", *overrides, f"input={tmp_path / 'absent.csv'}", "output=g.csv", "rubric=r"]) == 2
    assert "absent.csv does not exist" in capsys.readouterr().err
    assert main(["judge", *overrides, f"input={source}", "output=g.csv", "rubric=r", "keep_columns=[uid]"]) == 2
    assert "`keep_columns` ['uid'] are not columns of" in capsys.readouterr().err
    assert main(["judge", *overrides, f"input={source}", "output=g.txt", "temprature=1", "columns.answer=x"]) == 2
    error = capsys.readouterr().err
    assert "did you mean `temperature`" in error and "unknown field(s) ['answer']" in error and ".jsonl" in error


def test_dataset_folder_goes_through_datasets_load_dataset(tmp_path, judge_setup, capsys):
    """A path that is not a file is loaded with ``datasets.load_dataset`` (a hub id, or a local data folder)."""
    overrides, reference, _ = judge_setup
    folder = tmp_path / "my_dataset"
    folder.mkdir()
    rows = [{**row, "rubric": format_rubric(RUBRIC)} for row in ROWS]
    (folder / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    output = tmp_path / "grades.jsonl"
    assert main(["judge", *overrides, f"input={folder}", "split=train", "limit=2", f"output={output}"]) == 0
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert [record["score"] for record in records] == pytest.approx([grade.score for grade in reference[:2]], abs=1e-5)
    assert main(["judge", *overrides, f"input={folder}", "split=test", f"output={output}"]) == 2
    assert "failed" in capsys.readouterr().err


def test_tract_judge_shows_one_progress_bar_and_no_info_logs_unless_verbose(tmp_path, judge_setup):
    overrides = judge_setup[0]
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps({**row, "rubric": RUBRIC}) + "\n" for row in ROWS))
    command = [sys.executable, "-m", "llamafactory_tract.cli", "judge", *overrides, f"input={source}"]
    quiet = subprocess.run([*command, f"output={tmp_path / 'q.jsonl'}"], capture_output=True, text=True, timeout=600)
    assert quiet.returncode == 0, quiet.stderr
    bars = [line for line in re.split(r"[\r\n]", quiet.stderr) if "%|" in line]
    assert bars and all(line.startswith("tract judge:") for line in bars), quiet.stderr
    assert re.search(r"3/3 \[\d\d:\d\d<\d\d:\d\d, +[\d.]+(row/s|s/row)\]", bars[-1])  # counts, elapsed<ETA, rate
    assert "[INFO" not in quiet.stderr + quiet.stdout and "Graded 3 rows" in quiet.stdout
    verbose = subprocess.run(
        [*command, f"output={tmp_path / 'v.jsonl'}", "--verbose"], capture_output=True, text=True, timeout=600
    )
    assert verbose.returncode == 0 and "[INFO" in verbose.stdout + verbose.stderr
