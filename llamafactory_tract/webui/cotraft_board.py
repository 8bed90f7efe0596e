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

"""CoT-RAFT on LlamaBoard's train tab: one input per key, the arguments they give, the loss parts' curves.

Labels' help text is the keys' own ``help`` (``llamafactory-cli train -h``), so the board and the
CLI cannot drift apart; defaults are the argument classes' defaults. The patches wire these into
LLaMA-Factory's board (its stage list, runner, command cleaner, locales and loss plot).
"""

from dataclasses import MISSING, Field, fields
from typing import TYPE_CHECKING, Any

import gradio as gr

from llamafactory_tract.compat.gradio_internals import move_before
from llamafactory_tract.hparams import TractDataArguments, TractFinetuningArguments

if TYPE_CHECKING:
    from collections.abc import Callable

    from gradio.blocks import BlockContext
    from gradio.components import Component
    from matplotlib.figure import Figure

STAGE_LABEL = "CoT-RAFT"  # short, like the other stage names: the stage box is narrow
ACCORDION = "cotraft_tab"
ACCORDION_LABEL = "CoT-RAFT (TRACT) configurations"
BOARD_LANGUAGES = ("en", "ru", "zh", "ko", "ja")  # LlamaBoard's language choices; ours are in English for all
UNSET_EFFECTIVE_BATCH = 0
LABELS = {
    "raft_lambda": "RAFT weight (lambda)",
    "score_delimiter": "Score delimiter",
    "score_values": "Score values",
    "cotraft_min_prompt_share": "Min. prompt share",
    "cotraft_effective_batch_size": "Effective batch size",
    "cotraft_drop_cot": "Drop CoT (RAFT only)",
    "cotraft_score_in_ce": "Score token in CE",
    "cotraft_strict_data": "Strict data",
    "cotraft_chunked_loss": "Chunked loss",
    "score_only_prompt": "Authors' score-only prompt",
    "remove_reference": "Remove reference answer",
    "cotraft_require_delimiter": "Require delimiter",
}
SWITCHES = ("cotraft_drop_cot", "cotraft_score_in_ce", "cotraft_strict_data", "cotraft_chunked_loss")
AUTHORS_RULES = ("score_only_prompt", "remove_reference", "cotraft_require_delimiter")
CHECKBOXES = (*SWITCHES, *AUTHORS_RULES)
ROWS = (
    ("raft_lambda", "score_delimiter", "score_values"),
    ("cotraft_min_prompt_share", "cotraft_effective_batch_size"),
    SWITCHES,
    AUTHORS_RULES,  # the TRACT authors' opt-in data rules, on a row of their own
)
# (key, colour) of the loss parts drawn over LlamaBoard's loss curve.
LOSS_PARTS = (("ce_loss", "#ff7f0e"), ("raft_loss", "#2ca02c"))


def _fields() -> dict[str, Field]:
    arguments = (*fields(TractDataArguments), *fields(TractFinetuningArguments))
    return {field.name: field for field in arguments if field.name in LABELS}


def _default(field: Field) -> Any:
    return field.default if field.default is not MISSING else field.default_factory()


def _info(key: str, field: Field) -> str:
    info = field.metadata["help"].removeprefix("[cotraft] ")
    if key == "cotraft_effective_batch_size":
        info += f" {UNSET_EFFECTIVE_BATCH}: unset (the gradient accumulation above applies)."
    return info


def create_inputs() -> dict[str, "Component"]:
    """Key -> an unrendered input with the key's default; ``render_inputs`` places them."""
    defaults = {key: _default(field) for key, field in _fields().items()}
    inputs: dict[str, Component] = {
        "raft_lambda": gr.Number(value=defaults["raft_lambda"], minimum=0, step=0.1, render=False),
        "score_delimiter": gr.Textbox(value=defaults["score_delimiter"], render=False),
        "score_values": gr.Textbox(value=defaults["score_values"], render=False),
        "cotraft_min_prompt_share": gr.Slider(
            minimum=0, maximum=1, step=0.01, value=defaults["cotraft_min_prompt_share"], render=False
        ),
        # Its default (None) is unset; a number input shows that as 0.
        "cotraft_effective_batch_size": gr.Number(value=UNSET_EFFECTIVE_BATCH, minimum=0, precision=0, render=False),
    }
    inputs.update({key: gr.Checkbox(value=defaults[key], render=False) for key in CHECKBOXES})
    return inputs


def render_inputs(inputs: dict[str, "Component"], before: "BlockContext") -> gr.Accordion:
    """Render the inputs in an accordion placed right before ``before`` (the train tab's button row)."""
    with gr.Accordion(open=False) as accordion:
        for row in ROWS:
            with gr.Row():
                for key in row:
                    inputs[key].render()
    move_before(accordion, before)
    return accordion


def open_for_stage(training_stage: str) -> gr.Accordion:
    """Open the accordion when CoT-RAFT is chosen as the stage, close it otherwise."""
    return gr.Accordion(open=training_stage == STAGE_LABEL)


def locales() -> dict[str, dict[str, dict[str, str]]]:
    """LlamaBoard's ``LOCALES`` entries for the inputs and the accordion: label and help per language."""
    entries = {key: {"label": LABELS[key], "info": _info(key, field)} for key, field in _fields().items()}
    entries[ACCORDION] = {"label": ACCORDION_LABEL}
    return {name: dict.fromkeys(BOARD_LANGUAGES, entry) for name, entry in entries.items()}


def train_args(value_of: "Callable[[str], Any]") -> dict[str, Any]:
    """The training keys the inputs set, from ``value_of(key)``; an unset effective batch is left out."""
    args = {key: value_of(key) for key in LABELS}
    args["raft_lambda"] = float(args["raft_lambda"])
    effective_batch = int(args.pop("cotraft_effective_batch_size") or UNSET_EFFECTIVE_BATCH)
    if effective_batch != UNSET_EFFECTIVE_BATCH:
        args["cotraft_effective_batch_size"] = effective_batch
    return args


def false_but_set(args: dict[str, Any]) -> dict[str, Any]:
    """Our switches that are off although on by default: LlamaBoard drops False values from commands."""
    defaults = {key: _default(field) for key, field in _fields().items() if key in CHECKBOXES}
    return {key: value for key, value in args.items() if value is False and defaults.get(key) is True}


def add_loss_parts(figure: "Figure", trainer_log: list[dict[str, Any]]) -> "Figure":
    """Draw ``ce_loss`` and ``raft_loss`` (logged by ``stage: cotraft``) on LlamaBoard's loss figure."""
    axes = figure.axes[0]
    for key, colour in LOSS_PARTS:
        points = [(entry["current_steps"], entry[key]) for entry in trainer_log if entry.get(key) is not None]
        if points:
            steps, values = zip(*points, strict=True)
            axes.plot(steps, values, color=colour, label=key)
    axes.legend()
    return figure
