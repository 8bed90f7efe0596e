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


"""Part b: ``llamafactory-cli train`` with ``stage: cotraft`` for a few steps, as a GPU user runs it.

Three runs of the small random Llama on the judge rows, each a real CLI process: bf16 with SDPA and
evaluation (``val_size``, the default eval batch of 8); ``neat_packing`` with ``flash_attn: fa2`` and
evaluation (LLaMA-Factory's collator asserts a batch of one on packed fa2 batches; without flash-attn
installed the run must say it falls back to SDPA); and the first run again with Liger's kernels, whose
losses must equal the run without Liger within bf16 tolerance. On CPU (the dry run) the Liger run must
be refused at start-up with the reason.
"""

import importlib.util
import tempfile
import time
from pathlib import Path

from benchmarks.gpu_check.cli_runs import CliRun, run_cli, small_train_args
from benchmarks.gpu_check.models import write_small_llama
from benchmarks.gpu_check.result import PartResult, part_arguments

LIGER_LOSS_RTOL = 2e-2  # bf16: Liger's kernels round differently from the eager ops
FALLBACK_WARNING = "flash-attn"  # the start-up warning names the missing package


def evaluation(steps: int) -> dict:
    """Evaluation at the last step on a quarter of the rows, with LLaMA-Factory's default eval batch of 8."""
    return {
        "do_eval": True,
        "val_size": 0.25,
        "eval_strategy": "steps",
        "eval_steps": steps,
        "per_device_eval_batch_size": 8,
    }


def record_run(result: PartResult, name: str, run: CliRun) -> None:
    result.figures[name] = {
        "returncode": run.returncode,
        "losses": run.losses,
        "eval": run.eval_metrics,
        "wall_s": round(run.wall_s, 1),
    }
    result.check(f"{name}: exits 0 with finite losses", run.ok, value=run.returncode if run.ok else run.tail())


def main(argv: list[str] | None = None) -> None:
    args = part_arguments(__doc__).parse_args(argv)
    result = PartResult("training_cli")
    import torch

    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        result.skip("no CUDA device").write(args.out)
        return
    steps = 3 if args.tiny else 6
    box_deadline = time.monotonic() + args.box_s - 5  # room to write the result
    with tempfile.TemporaryDirectory(prefix="gpu_check_cli_") as tmp:
        work = Path(tmp)
        model = write_small_llama(args.assets / "tokenizer", work / "model", args.tiny)
        dataset = args.assets / "data"

        def run(name: str, extra: dict) -> CliRun:
            base = small_train_args(model, dataset, work / name, cuda, steps)
            return run_cli({**base, **extra}, work / f"{name}_run", max(deadline_left(box_deadline), 10))

        plain = run("sdpa_eval", {"flash_attn": "sdpa", **evaluation(steps)})
        record_run(result, "sdpa_eval", plain)
        result.check("sdpa_eval: evaluation metrics written", "eval_loss" in plain.eval_metrics, plain.eval_metrics)

        # LLaMA-Factory's collator takes one packed row per micro-batch under fa2; evaluation keeps its batch of 8.
        packed_args = {"flash_attn": "fa2", "neat_packing": True, "per_device_train_batch_size": 1}
        packed = run("packed_fa2_eval", {**packed_args, **evaluation(steps)})
        record_run(result, "packed_fa2_eval", packed)
        result.check(
            "packed_fa2_eval: evaluation metrics written", "eval_loss" in packed.eval_metrics, packed.eval_metrics
        )
        if importlib.util.find_spec("flash_attn") is None:
            warned = FALLBACK_WARNING in packed.output and "sdpa" in packed.output.lower()
            result.check("packed_fa2_eval: SDPA fallback stated (flash-attn not installed)", warned)

        liger = run("sdpa_eval_liger", {"flash_attn": "sdpa", "enable_liger_kernel": True, **evaluation(steps)})
        if cuda:
            record_run(result, "sdpa_eval_liger", liger)
            pairs = list(zip(liger.losses, plain.losses, strict=False))
            worst = max((abs(a - b) / abs(b) for a, b in pairs), default=float("inf"))
            result.check(
                "liger: losses equal Liger off (relative)",
                len(pairs) == len(plain.losses) and worst <= LIGER_LOSS_RTOL,
                value=worst,
                tolerance=LIGER_LOSS_RTOL,
            )
        else:
            refused = liger.returncode not in (0, None) and "`enable_liger_kernel` needs a GPU" in liger.output
            result.check("liger on CPU: refused at start-up with the reason", refused, value=liger.tail(300))
    print(f"[training_cli] {result.status}: {result.reason or ''}")
    result.write(args.out)


def deadline_left(deadline: float) -> float:
    return deadline - time.monotonic()


if __name__ == "__main__":
    main()
