"""The ``tract`` command. Each subcommand registers itself with two functions (arguments, run).

To add one (``generate``, ``pipeline``, ``demo``): write ``_add_x(parser)`` and ``_run_x(args) -> int``
and add ``"x": (help, _add_x, _run_x)`` to ``SUBCOMMANDS``.
"""

import argparse
import sys
from collections.abc import Callable

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
    from .benchmarks import BenchmarkDataError
    from .eval_config import EvalConfigError, load_eval_config
    from .evaluate import describe_forced_cots, run_evaluation

    try:
        config = load_eval_config(args.config, args.overrides)
        report = run_evaluation(config)
    except (EvalConfigError, BenchmarkDataError) as error:
        print(f"tract eval: error: {error}", file=sys.stderr)
        return 2
    print(report.table)
    forced = describe_forced_cots(report.closed_by)
    if forced:
        print(forced)
    print(f"Saved metrics.json, metrics.csv and predictions.jsonl in {report.output_dir}")
    return 0


SUBCOMMANDS: dict[str, Subcommand] = {
    "eval": ("score benchmarks with a judge and print the Table 2 metrics", _add_eval, _run_eval),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tract", description="TRACT LLM-as-a-judge tools for LLaMA-Factory.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, add_arguments, run) in SUBCOMMANDS.items():
        command = commands.add_parser(name, help=help_text, description=help_text)
        add_arguments(command)
        command.set_defaults(run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
