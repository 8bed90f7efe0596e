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

"""The ``tract`` command. Each subcommand registers itself with two functions (arguments, run).

To add one (``generate``, ``pipeline``, ``demo``): write ``_add_x(parser)`` and ``_run_x(args) -> int``
and add ``"x": (help, _add_x, _run_x)`` to ``SUBCOMMANDS``.

``main`` applies one rule to every subcommand: a user's mistake (``TractUserError``, which every error
naming what the user should change derives from) ends with one message, ``tract <command>: error: ...``,
and exit status 2 (``TRACT_DEBUG=1``: the traceback instead); SIGTERM or SIGINT runs every cleanup on the way out, ends
the processes the command started (engines, steps) and exits with 130.
"""

import argparse
import signal
import sys
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

from llamafactory_tract.extras.errors import (
    INTERRUPTED_EXIT,
    TractUserError,
    debug_requested,
    print_user_error,
)
from llamafactory_tract.extras.signals import descendants, end_new_children, stop_on_sigterm

Subcommand = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]


def _add_eval(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML eval config, e.g. yaml_configs/eval_tract.yaml")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="override config keys, e.g. n_cot=4 benchmarks.mt_bench.limit=10",
    )


def _run_eval(args: argparse.Namespace) -> int:
    from llamafactory_tract.eval.config import load_eval_config
    from llamafactory_tract.eval.evaluate import describe_forced_cots, run_evaluation, score_definition
    from llamafactory_tract.eval.pairwise import format_pairwise
    from llamafactory_tract.extras.paths import check_creatable_dir

    config = load_eval_config(args.config, args.overrides)
    check_creatable_dir(config.output_dir, "output_dir")
    report = run_evaluation(config)
    print(report.table)
    print(score_definition(config))
    if report.pairwise:
        print(format_pairwise(report.pairwise))
    forced = describe_forced_cots(report.closed_by)
    if forced:
        print(forced)
    print(f"Saved metrics.json, metrics.csv and predictions.jsonl in {report.output_dir}")
    return 0


def _add_pipeline(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "configs",
        nargs="+",
        metavar="CONFIG.yaml|key=value",
        help="pipeline YAMLs merged left to right (e.g. a model file then a Table 2 row), then key=value overrides "
        "such as stage2.overrides.raft_lambda=2",
    )
    parser.add_argument("--status", action="store_true", help="show each step as done / partial / stale / missing")
    parser.add_argument(
        "--refuse-stale",
        action="store_true",
        help="stop, listing them, instead of redoing steps made by another configuration or from other inputs",
    )


def _run_pipeline(args: argparse.Namespace) -> int:
    from llamafactory_tract.pipeline.config import load_pipeline_config
    from llamafactory_tract.pipeline.runner import format_status, run_pipeline

    paths = [item for item in args.configs if "=" not in item]
    config = load_pipeline_config(paths, [item for item in args.configs if "=" in item])
    if args.status:
        print(format_status(config))
        return 0
    report = run_pipeline(config, refuse_stale=args.refuse_stale)
    if report is not None:
        print(report.table)
    return 0


def _add_generate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML D_self generation config, e.g. yaml_configs/generate_d_self.yaml")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. shard_index=1 num_shards=4")


def _run_generate(args: argparse.Namespace) -> int:
    from llamafactory_tract.pipeline.self_generation import run_generation_config

    summary = run_generation_config(args.config, args.overrides)
    if summary is not None:
        print(summary)
    return 0


def _add_judge_items(parser: argparse.ArgumentParser, example: str) -> None:
    parser.add_argument(
        "configs",
        nargs="+",
        metavar="CONFIG.yaml|key=value",
        help=f"judge YAMLs merged left to right, then key=value overrides, e.g. {example}",
    )


def _add_judge(parser: argparse.ArgumentParser) -> None:
    _add_judge_items(parser, "yaml_configs/judge_smollm2_cpu.yaml input=rows.csv output=grades.csv")
    parser.add_argument("-v", "--verbose", action="store_true", help="keep the libraries' INFO logs (model loading)")


def _run_judge(args: argparse.Namespace) -> int:
    from llamafactory_tract.extras.logging import quiet_libraries
    from llamafactory_tract.judge.grade_file import run_grade_file

    with nullcontext() if args.verbose else quiet_libraries():
        report = run_grade_file(args.configs)
    print(report.summary())
    return 0


def _add_serve(parser: argparse.ArgumentParser) -> None:
    _add_judge_items(parser, "yaml_configs/judge_smollm2_cpu.yaml port=8000")


def _run_serve(args: argparse.Namespace) -> int:
    from llamafactory_tract.serve.app import run_server

    run_server(args.configs)
    return 0


def _add_demo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="folder with vicuna_eval.json and mt_bench_eval.json (default: $TRACT_SHARED_DATA, else download "
        "them once from the prometheus-eval repository into ~/.cache/llamafactory-tract)",
    )
    parser.add_argument("--run-root", type=Path, default=Path("saves/demo"), help="where every step writes")
    parser.add_argument(
        "--train-rows",
        type=int,
        default=48,
        help="Vicuna Bench prompts with a GPT-4 CoT to train on: every score level, the shortest prompts of each",
    )
    parser.add_argument(
        "--eval-rows",
        type=int,
        default=30,
        help="MT Bench rows to evaluate on: as many per GPT-4 score level, on questions not trained on",
    )
    parser.add_argument(
        "--table3-rows", type=int, default=8, help="training rows per stage scored for Table 3 at the end"
    )


def _run_demo(args: argparse.Namespace) -> int:
    from llamafactory_tract.demo.run import run_demo

    print(run_demo(args.data_dir, args.run_root, args.train_rows, args.eval_rows, args.table3_rows))
    return 0


def _add_report(parser: argparse.ArgumentParser) -> None:
    kinds = parser.add_subparsers(dest="kind", required=True, metavar="KIND")
    curve = kinds.add_parser("curve", help="Figure 2 (x=raft_lambda) / Figure 3 (x=n_cot) from evaluation folders")
    curve.add_argument("eval_dirs", nargs="+", type=Path, help="finished evaluation folders (with metrics.json)")
    curve.add_argument("--x", default="n_cot", help="recorded setting on the x axis: n_cot or raft_lambda")
    curve.add_argument("--metric", default="pearson", help="pearson, spearman, kendall or rmse (benchmark average)")
    curve.add_argument("--output", type=Path, default=Path("saves/report/curve"), help="writes OUTPUT.txt, .png")
    compare = kinds.add_parser(
        "compare", help="paired difference of two evaluations on the same rows, with 95% bootstrap intervals"
    )
    compare.add_argument("run_a", type=Path, help="finished evaluation folder A (metrics.json, predictions.jsonl)")
    compare.add_argument("run_b", type=Path, help="finished evaluation folder B, scored on the same rows")
    compare.add_argument("--output", type=Path, default=Path("saves/report/compare"), help="writes OUTPUT.txt, .json")
    table3 = kinds.add_parser("table3", help="Table 3: RMSE with the training CoT vs. a self-generated one")
    table3.add_argument(
        "configs",
        nargs="+",
        metavar="CONFIG.yaml|key=value",
        help="Table 3 YAMLs merged left to right, then key=value overrides, e.g. yaml_configs/table3.yaml "
        "rows.stage1.limit=100",
    )


def _run_report(args: argparse.Namespace) -> int:
    return {"curve": _run_report_curve, "compare": _run_report_compare, "table3": _run_report_table3}[args.kind](args)


def _run_report_curve(args: argparse.Namespace) -> int:
    from llamafactory_tract.eval.report import write_curve_report

    print(write_curve_report(args.eval_dirs, args.x, args.metric, args.output))
    print(f"Saved {args.output.with_suffix('.txt')} and {args.output.with_suffix('.png')}")
    return 0


def _run_report_compare(args: argparse.Namespace) -> int:
    from llamafactory_tract.eval.compare import compare_runs, write_comparison

    print(write_comparison(compare_runs(args.run_a, args.run_b), args.output))
    print(f"Saved {args.output.with_suffix('.txt')} and {args.output.with_suffix('.json')}")
    return 0


def _run_report_table3(args: argparse.Namespace) -> int:
    from llamafactory_tract.eval.table3 import TABLE_NAME, format_table3, load_table3_config, run_table3

    config = load_table3_config(args.configs)
    lines = run_table3(config)
    print(format_table3(lines))
    print(f"Saved {TABLE_NAME}.txt, .csv, .json, .png and each row's predictions.jsonl in {config.output_dir}")
    return 0


SUBCOMMANDS: dict[str, Subcommand] = {
    "eval": ("score benchmarks with a judge and print the Table 2 metrics", _add_eval, _run_eval),
    "generate": (
        "generate D_self: the stage-1 model's CoTs with the ground-truth scores",
        _add_generate,
        _run_generate,
    ),
    "pipeline": ("run Algorithm 1 (stage 1, D_self, stage 2, evaluation), resumable", _add_pipeline, _run_pipeline),
    "demo": ("the whole method at CPU scale with SmolLM2-135M and real GPT-4 CoTs", _add_demo, _run_demo),
    "judge": ("grade the rows of a CSV/JSON/JSONL file or hub dataset with expected scores", _add_judge, _run_judge),
    "report": (
        "Figure 2/3 curves, paired comparison of two runs, Table 3 (training vs. self-generated CoTs)",
        _add_report,
        _run_report,
    ),
    "serve": ("serve the judge over HTTP (POST /v1/grade), concurrent requests batched", _add_serve, _run_serve),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tract", description="TRACT LLM-as-a-judge tools for LLaMA-Factory.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, add_arguments, run) in SUBCOMMANDS.items():
        command = commands.add_parser(name, help=help_text, description=help_text)
        add_arguments(command)
        command.set_defaults(run=run)
    return parser


RESUMABLE = ("eval", "generate", "judge", "pipeline", "demo")
"""Commands that continue where an interrupted run stopped."""


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = " ".join(["tract", args.command, *([args.kind] if args.command == "report" else [])])
    started_before = descendants()
    with stop_on_sigterm():
        try:
            return args.run(args)
        except KeyboardInterrupt as stop:
            end_new_children(started_before)
            name = signal.SIGINT.name if type(stop) is KeyboardInterrupt else signal.SIGTERM.name
            resume = "; run the same command again to resume" if args.command in RESUMABLE else ""
            print(f"{command}: stopped by {name}{resume}.", file=sys.stderr)
            return INTERRUPTED_EXIT
        except TractUserError as error:
            if debug_requested():
                raise
            return print_user_error(command, error)


if __name__ == "__main__":
    sys.exit(main())
