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

"""Part a of the device check: the loss, the chunked loss and the judge give the CPU's numbers on the device.

1. ``cotraft_loss`` and its LoRA gradients on the device, in fp32 (TF32 off) and in bf16, against
   CPU fp32 on the same random Llama and batch.
2. ``chunked_cotraft_loss`` (hidden states captured as the trainer captures them) against
   ``cotraft_loss`` on full logits, both on the device: loss, expected scores and gradients.
3. ``HfJudgeBackend.score_cots`` (CoT-RAIL score probabilities) on the device against CPU fp32.

fp32 runs disable TF32 (``torch.backends.cuda.matmul.allow_tf32 = False``), so fp32 means fp32. bf16
runs mirror LLaMA-Factory training with ``bf16: true`` on a bf16 checkpoint: weights in bf16, the
trainable parameters (LoRA adapters; every weight for full fine-tuning) upcast to fp32, and
accelerate running the model's forward under bf16 autocast and returning fp32 outputs, the loss
computed outside autocast. The base weights are rounded to bf16 once, so the bf16 models hold
exactly the reference's weights and the comparisons measure the computation, not the weights'
rounding. The model is random (no weights ship with the check): its score probabilities are near
1/vocabulary, so the judge is compared on log-probabilities (relative error), not absolute ones.
With ``--device cpu`` every "device" run is a CPU run in the same precision (the dry run).
"""

import contextlib
import copy
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from torch import nn
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase

from benchmarks.gpu_check.result import PartResult, part_arguments
from llamafactory_tract.judge.backend import JudgePrompt
from llamafactory_tract.judge.config import JudgeConfig
from llamafactory_tract.judge.hf_backend import HfJudgeBackend
from llamafactory_tract.train.cotraft.chunked_loss import chunked_cotraft_loss
from llamafactory_tract.train.cotraft.final_hidden_states import forward_final_hidden_states, lm_head_parameters
from llamafactory_tract.train.cotraft.loss import IGNORE_INDEX, cotraft_loss
from llamafactory_tract.train.cotraft.trainer import count_loss_items

SEED = 0
PRECISIONS = ("fp32", "bf16")
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
SCORE_LITERALS = ["1", "2", "3", "4", "5"]  # SmolLM2 splits digits: the judge's score tokens (check 3 resolves them)
RAFT_LAMBDA = 1.0
# (loss and expected scores, gradients, judge log-probabilities), relative errors. fp32 (TF32 off): the same
# arithmetic in another order, ~1e-6 on the CPU (chunked vs full gradients 6e-7, batched vs single judge
# rows 4e-7); gradients sum over every position, hence 10x more room. bf16: 8-bit mantissas in every matmul
# (fp32 softmax and accumulation); the CPU dry run at full shapes measured 3e-3, 2.9e-2 and 5.5e-3.
TOLERANCES = {"fp32": (1e-5, 1e-4, 1e-5), "bf16": (2e-2, 1e-1, 5e-2)}
WORDS = (
    "the response is clear and accurate but it misses the key point of the rubric so the reference answer "
    "explains why the plan helps and the evaluation weighs each criterion before scoring"
).split()


@dataclass(frozen=True)
class Shapes:
    """Model and batch sizes: TINY for the CPU dry run, FULL for the device (seconds on an H200)."""

    hidden_size: int
    num_layers: int
    num_heads: int
    batch_size: int
    length: int
    """Tokens per training row (the last row is right-padded and unscored)."""
    chunk_size: int
    """Labelled tokens per chunk of the chunked loss: several chunks per batch."""
    judge_rows: int
    judge_words: int
    """Words in the longest judge prompt and CoT; rows vary in length, so the judge batch is left-padded."""


TINY = Shapes(
    hidden_size=32, num_layers=2, num_heads=4, batch_size=2, length=48, chunk_size=16, judge_rows=2, judge_words=8
)
FULL = Shapes(
    hidden_size=256, num_layers=4, num_heads=8, batch_size=4, length=512, chunk_size=512, judge_rows=8, judge_words=200
)


@dataclass
class LossOutcome:
    """One run's loss, expected scores and trainable-parameter gradients, in float64 on the CPU."""

    loss: float
    expected_scores: torch.Tensor
    gradients: dict[str, torch.Tensor]


def random_llama(tokenizer: PreTrainedTokenizerBase, shapes: Shapes) -> LlamaForCausalLM:
    """A seeded random Llama over the tokenizer's vocabulary, its weights rounded to bf16 (exact in both dtypes)."""
    torch.manual_seed(SEED)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=shapes.hidden_size,
        intermediate_size=2 * shapes.hidden_size,
        num_hidden_layers=shapes.num_layers,
        num_attention_heads=shapes.num_heads,
        num_key_value_heads=shapes.num_heads // 2,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(parameter.to(torch.bfloat16))
    return model


def with_lora(model: nn.Module) -> nn.Module:
    """LoRA on every linear layer, both matrices random (the default zero B would leave A without gradient)."""
    torch.manual_seed(SEED)
    config = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=LORA_TARGETS, init_lora_weights=False)
    return get_peft_model(copy.deepcopy(model), config)


def in_precision(model: nn.Module, precision: str, device: torch.device) -> nn.Module:
    """A copy as LLaMA-Factory trains it: bf16 -> weights in bf16, trainable parameters upcast to fp32."""
    model = copy.deepcopy(model)
    if precision == "bf16":
        model.to(torch.bfloat16)
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.data = parameter.data.float()
    return model.to(device).train()


def training_batch(shapes: Shapes, score_ids: list[int], vocab_size: int) -> dict[str, torch.Tensor]:
    """Random judge rows: prompt masked, score token masked and indexed, last row right-padded and unscored."""
    generator = torch.Generator().manual_seed(SEED)
    input_ids = torch.randint(0, vocab_size, (shapes.batch_size, shapes.length), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    labels = input_ids.clone()
    score_index = torch.full((shapes.batch_size,), -1)
    score_target = torch.zeros(shapes.batch_size)
    for row in range(shapes.batch_size):
        labels[row, : shapes.length // 3 + 3 * row] = IGNORE_INDEX
        if row == shapes.batch_size - 1:
            padding = shapes.length // 8
            attention_mask[row, -padding:] = 0
            labels[row, -padding:] = IGNORE_INDEX
            continue
        index = shapes.length - 3 - 2 * row  # a score token followed by end-of-turn tokens
        input_ids[row, index] = score_ids[row % len(score_ids)]
        labels[row, index] = IGNORE_INDEX
        score_index[row] = index
        score_target[row] = float(1 + (2 * row + 3) % len(score_ids))
    return dict(
        input_ids=input_ids,
        attention_mask=attention_mask,
        labels=labels,
        score_index=score_index,
        score_target=score_target,
    )


def loss_outcome(
    model: nn.Module,
    batch: dict[str, torch.Tensor],
    score_ids: list[int],
    precision: str,
    chunked: bool,
    chunk_size: int,
) -> LossOutcome:
    """What ``CoTRaftTrainer._loss_parts`` computes (full or chunked) and the gradients backward gives."""
    device = next(model.parameters()).device
    on_device = {key: value.to(device) for key, value in batch.items()}
    counts = count_loss_items([on_device]).to(device)
    loss_kwargs = dict(
        labels=on_device["labels"],
        score_index=on_device["score_index"],
        score_target=on_device["score_target"],
        score_token_ids=torch.tensor(score_ids, device=device),
        score_values=torch.tensor([float(literal) for literal in SCORE_LITERALS], device=device),
        raft_lambda=RAFT_LAMBDA,
        ce_normalizer=counts[0],
        raft_normalizer=counts[1],
    )
    inputs = {"input_ids": on_device["input_ids"], "attention_mask": on_device["attention_mask"]}
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    with autocast:  # accelerate wraps only the model's forward in autocast
        if chunked:
            hidden_states, _ = forward_final_hidden_states(model, model, inputs)
        else:
            logits = model(**inputs).logits
    if chunked:
        weight, bias = lm_head_parameters(model)
        parts = chunked_cotraft_loss(hidden_states, weight, bias, chunk_size=chunk_size, **loss_kwargs)
    else:  # accelerate's convert_outputs_to_fp32, as the Trainer receives the logits
        parts = cotraft_loss(logits=logits.float(), **loss_kwargs)
    trainable = [(name, parameter) for name, parameter in model.named_parameters() if parameter.requires_grad]
    gradients = torch.autograd.grad(parts.loss, [parameter for _, parameter in trainable])
    return LossOutcome(
        loss=float(parts.loss),
        expected_scores=parts.expected_scores.double().cpu(),
        gradients={name: gradient.double().cpu() for (name, _), gradient in zip(trainable, gradients, strict=True)},
    )


def compare_losses(
    result: PartResult, name: str, outcome: LossOutcome, reference: LossOutcome, precision: str
) -> None:
    """Loss and expected scores (relative max-abs error) and gradients (relative norm error of all of them)."""
    value_tolerance, gradient_tolerance, _ = TOLERANCES[precision]
    loss_error = abs(outcome.loss - reference.loss) / abs(reference.loss)
    score_error = float(
        (outcome.expected_scores - reference.expected_scores).abs().max() / reference.expected_scores.abs().max()
    )
    names = sorted(reference.gradients)
    if sorted(outcome.gradients) != names:
        raise ValueError(f"trainable parameters differ: {sorted(outcome.gradients)} vs {names}")
    actual = torch.cat([outcome.gradients[key].flatten() for key in names])
    expected = torch.cat([reference.gradients[key].flatten() for key in names])
    gradient_error = float((actual - expected).norm() / expected.norm())
    tensor_errors = {
        key: float((outcome.gradients[key] - reference.gradients[key]).norm() / reference.gradients[key].norm())
        for key in names
    }
    worst_tensor = max(tensor_errors, key=tensor_errors.__getitem__)
    result.figures[name] = {
        "loss": outcome.loss,
        "reference_loss": reference.loss,
        "loss_rel_error": loss_error,
        "expected_scores_rel_max_abs_error": score_error,
        "gradient_rel_norm_error": gradient_error,
        "gradient_cosine": float(torch.nn.functional.cosine_similarity(actual, expected, dim=0)),
        "gradient_tensors": len(names),
        "worst_tensor": worst_tensor,
        "worst_tensor_rel_norm_error": tensor_errors[worst_tensor],
    }
    result.check(f"{name}.loss", loss_error <= value_tolerance, loss_error, value_tolerance)
    result.check(f"{name}.expected_scores", score_error <= value_tolerance, score_error, value_tolerance)
    result.check(f"{name}.gradients", gradient_error <= gradient_tolerance, gradient_error, gradient_tolerance)


def guarded(result: PartResult, name: str, step: Callable[[], None]) -> None:
    """Run one sub-check; an exception fails it (recorded with its text) and the next sub-check still runs."""
    started = time.perf_counter()
    try:
        step()
    except Exception as error:  # noqa: BLE001 (any failure is a result to report)
        traceback.print_exc()
        result.check(name, False, f"{type(error).__name__}: {error}")
    result.figures.setdefault("seconds", {})[name] = round(time.perf_counter() - started, 2)


def loss_checks(result: PartResult, tokenizer_dir: Path, shapes: Shapes, device: torch.device) -> None:
    """Check 1: ``cotraft_loss`` with LoRA on the device (fp32, bf16) against CPU fp32."""
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    lora_model = with_lora(random_llama(tokenizer, shapes))
    score_ids = tokenizer.convert_tokens_to_ids(SCORE_LITERALS)
    batch = training_batch(shapes, score_ids, len(tokenizer))
    cpu = torch.device("cpu")
    reference = loss_outcome(in_precision(lora_model, "fp32", cpu), batch, score_ids, "fp32", False, shapes.chunk_size)
    for precision in PRECISIONS:
        name = f"cotraft_loss_{precision}"

        def step(precision: str = precision, name: str = name) -> None:
            model = in_precision(lora_model, precision, device)
            outcome = loss_outcome(model, batch, score_ids, precision, False, shapes.chunk_size)
            compare_losses(result, name, outcome, reference, precision)

        guarded(result, name, step)


def chunked_checks(result: PartResult, tokenizer_dir: Path, shapes: Shapes, device: torch.device) -> None:
    """Check 2: chunked against full logits on the device.

    fp32: full fine-tuning, so the chunked LM-head weight gradient is compared too; bf16: LoRA on a bf16
    model, so the hidden states and the frozen head reach the chunked loss in bf16.
    """
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = random_llama(tokenizer, shapes)
    trained = {"fp32": model, "bf16": with_lora(model)}
    score_ids = tokenizer.convert_tokens_to_ids(SCORE_LITERALS)
    batch = training_batch(shapes, score_ids, len(tokenizer))
    for precision in PRECISIONS:
        name = f"chunked_loss_{precision}"

        def step(precision: str = precision, name: str = name) -> None:
            on_device = in_precision(trained[precision], precision, device)
            full = loss_outcome(on_device, batch, score_ids, precision, False, shapes.chunk_size)
            chunked = loss_outcome(on_device, batch, score_ids, precision, True, shapes.chunk_size)
            compare_losses(result, name, chunked, full, precision)

        guarded(result, name, step)


def judge_inputs(shapes: Shapes) -> tuple[list[JudgePrompt], list[str]]:
    """Prompts and CoTs of different lengths (the batch is left-padded), words cycled from a fixed list."""
    prompts, cots = [], []
    for row in range(shapes.judge_rows):
        words = [WORDS[(row + index) % len(WORDS)] for index in range(shapes.judge_words)]
        keep = shapes.judge_words - row * shapes.judge_words // (2 * shapes.judge_rows)
        prompts.append(JudgePrompt.from_instruction("###Task Description: " + " ".join(words[:keep])))
        cots.append("Feedback: " + " ".join(reversed(words[: keep // 2 + 1])))
    return prompts, cots


def judge_backend(model_dir: Path, infer_dtype: str, device: torch.device) -> HfJudgeBackend:
    """The backend as ``tract eval`` loads it (LLaMA-Factory tokenizer, template and model), moved to ``device``.

    LLaMA-Factory places the model itself (``device_map: auto``, the GPU when there is one).
    """
    config = JudgeConfig(model_name_or_path=str(model_dir), template="smollm2", infer_dtype=infer_dtype)
    backend = HfJudgeBackend.from_config(config, with_cot=True)
    backend.model.to(device)
    return backend


def save_judge(model: LlamaForCausalLM, tokenizer_dir: Path, directory: Path) -> Path:
    """A model folder as ``tract eval`` takes it: weights plus the tokenizer (and its chat template)."""
    model.save_pretrained(directory)
    shutil.copytree(tokenizer_dir, directory, dirs_exist_ok=True)
    return directory


def judge_checks(
    result: PartResult, tokenizer_dir: Path, shapes: Shapes, device: torch.device, work_dir: Path
) -> None:
    """Check 3: CoT-RAIL score probabilities of the same CoTs on the device (fp32, bf16) against CPU fp32.

    One checkpoint per dtype, the same values in both: LLaMA-Factory 0.9.5 loads the checkpoint's own
    dtype (``torch_dtype="auto"``) whatever ``infer_dtype`` says, so a bf16 judge is a bf16 checkpoint.
    """
    model = random_llama(AutoTokenizer.from_pretrained(tokenizer_dir), shapes)
    model_dirs = {
        "fp32": save_judge(model, tokenizer_dir, work_dir / "judge_fp32"),
        "bf16": save_judge(model.to(torch.bfloat16), tokenizer_dir, work_dir / "judge_bf16"),
    }
    prompts, cots = judge_inputs(shapes)
    reference_backend = judge_backend(model_dirs["fp32"], "float32", torch.device("cpu"))
    reference = torch.tensor(reference_backend.score_cots(prompts, cots), dtype=torch.float64)
    contexts = [reference_backend.contexts.score_context(p, c) for p, c in zip(prompts, cots, strict=True)]
    result.figures["judge_rows"] = {
        "context_tokens": [len(context) for context in contexts],
        "score_token_ids": list(reference_backend.score_tokens.token_ids),
        "reference_probs_range": [float(reference.min()), float(reference.max())],
    }
    for precision, dtype in zip(PRECISIONS, (torch.float32, torch.bfloat16), strict=True):
        name = f"judge_probs_{precision}"

        def step(precision: str = precision, dtype: torch.dtype = dtype, name: str = name) -> None:
            infer_dtype = str(dtype).removeprefix("torch.")
            backend = judge_backend(model_dirs[precision], infer_dtype, device)
            loaded = next(backend.model.parameters()).dtype
            result.check(f"{name}.model_dtype", loaded == dtype, str(loaded), str(dtype))
            probs = torch.tensor(backend.score_cots(prompts, cots), dtype=torch.float64)
            log_error = float((probs.log() - reference.log()).abs().max())
            tolerance = TOLERANCES[precision][2]
            result.figures[name] = {
                "model_device": str(backend.device),
                "log_prob_max_abs_diff": log_error,
                "prob_max_abs_diff": float((probs - reference).abs().max()),
            }
            result.check(f"{name}.log_probs", log_error <= tolerance, log_error, tolerance)

        guarded(result, name, step)


def run(device_name: str, tiny: bool, assets: Path) -> PartResult:
    """The three checks, each on its own: one that raises is recorded as failed and the next still runs."""
    result = PartResult("correctness")
    if device_name == "cuda" and not torch.cuda.is_available():
        return result.skip("no CUDA device")
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32: TF32 would be ~1e-3 off
    torch.backends.cudnn.allow_tf32 = False
    device = torch.device(device_name)
    shapes = TINY if tiny else FULL
    tokenizer_dir = assets / "tokenizer"
    result.figures.update(
        device=torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        torch=torch.__version__,
        tf32=torch.backends.cuda.matmul.allow_tf32,
        shapes=asdict(shapes),
        tolerances={
            precision: dict(zip(("loss_and_expected_scores", "gradients", "judge_log_probs"), values, strict=True))
            for precision, values in TOLERANCES.items()
        },
    )
    guarded(result, "cotraft_loss", lambda: loss_checks(result, tokenizer_dir, shapes, device))
    guarded(result, "chunked_loss", lambda: chunked_checks(result, tokenizer_dir, shapes, device))
    with tempfile.TemporaryDirectory(prefix="gpu_check_correctness_") as work_dir:
        guarded(result, "judge_probs", lambda: judge_checks(result, tokenizer_dir, shapes, device, Path(work_dir)))
    return result


def print_summary(result: PartResult) -> None:
    print(
        f"correctness on {result.figures.get('device', '-')}: {result.status}"
        + (f" ({result.reason})" if result.reason else "")
    )
    for check in result.checks:
        value = f"{check.value:.3g}" if isinstance(check.value, float) else check.value
        print(f"  {'ok  ' if check.passed else 'FAIL'} {check.name}: {value} (tolerance {check.tolerance})")


def main() -> None:
    args = part_arguments(__doc__.splitlines()[0]).parse_args()
    result = run(args.device, args.tiny, args.assets)
    print_summary(result)
    result.write(args.out)


if __name__ == "__main__":
    main()
