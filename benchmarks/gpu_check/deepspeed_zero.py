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


"""Part d: ``stage: cotraft`` under DeepSpeed ZeRO-2 and ZeRO-3 on one GPU, with the project's DeepSpeed configs.

DeepSpeed publishes no wheel; ``prepare`` builds one without precompiled ops. Each stage is a real
``FORCE_TORCHRUN=1 llamafactory-cli train`` of the small random Llama for a few bf16 steps; ZeRO-3 must
also say at start-up that the chunked loss is off and what the full logits cost. Without CUDA the part
only checks that the built wheel imports, and says so.
"""

import importlib
import tempfile
import time
from pathlib import Path

from benchmarks.gpu_check.cli_runs import run_cli, small_train_args
from benchmarks.gpu_check.models import write_small_llama
from benchmarks.gpu_check.result import PartResult, part_arguments

REPO_ROOT = Path(__file__).resolve().parents[2]
ZERO_CONFIGS = {
    "zero2": "yaml_configs/deepspeed/ds_z2_config.json",
    "zero3": "yaml_configs/deepspeed/ds_z3_config.json",
}
ZERO3_NOTICE = ("chunked loss off", "ZeRO-3", "Estimated extra memory")  # the trainer's start-up line


def main(argv: list[str] | None = None) -> None:
    args = part_arguments(__doc__).parse_args(argv)
    result = PartResult("deepspeed_zero")
    try:
        deepspeed = importlib.import_module("deepspeed")
        result.check("deepspeed wheel imports", True, value=deepspeed.__version__)
    except Exception as error:  # the wheel's imports are what this records
        result.check("deepspeed wheel imports", False, value=f"{type(error).__name__}: {error}")
        result.write(args.out)
        return
    import torch

    if args.device != "cuda" or not torch.cuda.is_available():
        result.skip("ZeRO needs a CUDA device (checked here: the built DeepSpeed wheel imports)").write(args.out)
        return
    deadline = time.monotonic() + args.box_s - 5  # room to write the result
    with tempfile.TemporaryDirectory(prefix="gpu_check_zero_") as tmp:
        work = Path(tmp)
        model = write_small_llama(args.assets / "tokenizer", work / "model", args.tiny)
        for name, config in ZERO_CONFIGS.items():
            train_args = small_train_args(model, args.assets / "data", work / name, cuda=True, steps=4)
            train_args["deepspeed"] = str(REPO_ROOT / config)
            left = deadline - time.monotonic()
            run = run_cli(train_args, work / f"{name}_run", max(left, 10), env={"FORCE_TORCHRUN": "1"})
            result.figures[name] = {"returncode": run.returncode, "losses": run.losses, "wall_s": round(run.wall_s, 1)}
            result.check(f"{name}: exits 0 with finite losses", run.ok, value=run.returncode if run.ok else run.tail())
            if name == "zero3":
                said = [line for line in run.output.splitlines() if all(words in line for words in ZERO3_NOTICE)]
                result.figures["zero3_notice"] = said[:3]
                result.check("zero3: chunked loss off and its memory stated at start-up", bool(said))
    result.write(args.out)


if __name__ == "__main__":
    main()
