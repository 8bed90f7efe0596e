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

"""Everything llamafactory-tract grafts onto LLaMA-Factory 0.9.5, one function per module.

Each graft wraps a module attribute and defers to the original: other stages behave exactly as
before, and ``stage: cotraft`` runs through LLaMA-Factory's own code (argument checks, callbacks,
profilers, dataset loading, caching, Ray and process-group teardown) except where it must differ.
LLaMA-Factory is only imported inside the functions: this module is loaded at interpreter start-up.
"""

import copy
import json
import math
import sys
from collections.abc import Callable
from functools import wraps
from types import ModuleType
from typing import Any

COTRAFT_STAGE = "cotraft"
SCORE_COLUMN = "score"
# LLaMA-Factory 0.9.5's `_training_function` dispatches on literal stage names; `cotraft` rides the
# `sft` branch (`run_sft`, wrapped below) and gets its name back before anything else reads it.
DISPATCH_STAGE = "sft"
DISPATCHED_AS = "_tract_dispatched_stage"


def _with_override(args: dict[str, Any] | list[str], key: str, value: Any) -> dict[str, Any] | list[str]:
    """``args`` (a YAML dict or CLI flags, as ``read_args`` returns them) with one more key set."""
    if isinstance(args, dict):
        return {**args, key: value}
    return [*args, f"--{key}", str(value)]


def _requested_stage(args: dict[str, Any] | list[str]) -> str | None:
    """The ``stage`` that ``args`` (as ``read_args`` returns them) asks for, before they are parsed."""
    if isinstance(args, dict):
        return args.get("stage")
    for index, item in enumerate(args):
        if item.startswith("--stage="):
            return item.partition("=")[2]
        if item == "--stage" and index + 1 < len(args):
            return args[index + 1]
    return None


def _use_tract_arguments(parser: ModuleType) -> None:
    """Put our Data/FinetuningArguments subclasses into the train, inference (chat, API, export) and eval parsers."""
    from llamafactory_tract.hparams import TractDataArguments, TractFinetuningArguments

    swaps = {parser.DataArguments: TractDataArguments, parser.FinetuningArguments: TractFinetuningArguments}
    for classes in (parser._TRAIN_ARGS, parser._INFER_ARGS, parser._EVAL_ARGS):
        for base, ours in swaps.items():
            if ours not in classes:
                classes[classes.index(base)] = ours


def graft_parser(parser: ModuleType) -> None:
    """Parse ``stage: cotraft`` and our keys (listed in ``-h``) via subclasses of Data/FinetuningArguments.

    The subclasses are swapped in when arguments are first parsed, not at import: our hparams
    module imports LLaMA-Factory, which may be what is importing this parser right now. The
    inference parser gets them too, so ``llamafactory-cli export``/``chat`` read a cotraft run's
    YAML. With ``cotraft_effective_batch_size`` the training arguments are parsed again with the
    derived ``gradient_accumulation_steps``, so everything computed from it (DeepSpeed's batch) agrees.
    ``get_train_args`` runs our checks, then LLaMA-Factory's with ``cotraft`` presented as the
    SFT-shaped stage it is (its ``neat_packing`` check allows SFT only), and gives the name back.
    For ``stage: cotraft`` unknown keys are named with the nearest known one and every bool/int/float key
    is coerced to its type first (``HfArgumentParser`` passes a YAML's strings through), and any error
    parsing or checking the arguments is a user's mistake (``TractUserError``: one message on the command
    line, see ``graft_tuner``).
    """
    original = parser._parse_train_args

    @wraps(original)
    def _parse_train_args(args=None):
        from llamafactory.extras.misc import is_env_enabled

        from llamafactory_tract.data.score_format import score_format_of
        from llamafactory_tract.hparams.coercion import coerce_args, refuse_unknown_keys
        from llamafactory_tract.hparams.cotraft_checks import check_cotraft_arguments
        from llamafactory_tract.hparams.effective_batch import derived_gradient_accumulation
        from llamafactory_tract.hparams.stage_keys import refuse_cotraft_keys

        _use_tract_arguments(parser)
        args = _renamed_keys(parser.read_args(args))
        refuse_cotraft_keys(args, _requested_stage(args))
        if isinstance(args, dict) and args.get("stage") == COTRAFT_STAGE:
            if not is_env_enabled("ALLOW_EXTRA_ARGS"):  # LLaMA-Factory's switch to let unknown keys pass
                refuse_unknown_keys(args, parser._TRAIN_ARGS)
            args = coerce_args(args, parser._TRAIN_ARGS)
        parsed = original(args)
        _, _, training_args, finetuning_args, _ = parsed
        steps = derived_gradient_accumulation(training_args, finetuning_args)
        if steps is not None and steps != training_args.gradient_accumulation_steps:
            parsed = original(_with_override(args, "gradient_accumulation_steps", steps))
        model_args, data_args, training_args, finetuning_args, _ = parsed
        if finetuning_args.stage == COTRAFT_STAGE:
            check_cotraft_arguments(model_args, data_args, training_args)
            score_format_of(data_args)  # a bad delimiter or score value stops here, naming it
            setattr(finetuning_args, DISPATCHED_AS, COTRAFT_STAGE)
            finetuning_args.stage = DISPATCH_STAGE
        return parsed

    parser._parse_train_args = _parse_train_args
    original_get_train_args = parser.get_train_args

    @wraps(original_get_train_args)
    def get_train_args(args=None):
        from llamafactory_tract.extras.errors import TractUserError

        args = parser.read_args(args)
        try:
            parsed = original_get_train_args(args)
        except (ValueError, TypeError) as error:
            if _requested_stage(args) != COTRAFT_STAGE or isinstance(error, TractUserError):
                raise
            raise TractUserError(str(error)) from error
        finetuning_args = parsed[3]
        if getattr(finetuning_args, DISPATCHED_AS, None) == COTRAFT_STAGE:
            finetuning_args.stage = COTRAFT_STAGE
        return parsed

    parser.get_train_args = get_train_args
    for name in ("_parse_infer_args", "_parse_eval_args"):
        setattr(parser, name, _after_tract_arguments(parser, getattr(parser, name)))


def _after_tract_arguments(parser: ModuleType, original: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(original)
    def parse(args=None):
        _use_tract_arguments(parser)
        return original(_renamed_keys(parser.read_args(args)))

    return parse


def _renamed_keys(args: dict[str, Any] | list[str]) -> dict[str, Any] | list[str]:
    """Deprecated key names (``cotraft_remove_reference``, ...) under their current ones, with a warning."""
    from llamafactory_tract.hparams.deprecated_keys import rename_deprecated_flags, rename_deprecated_keys

    return rename_deprecated_keys(args) if isinstance(args, dict) else rename_deprecated_flags(args)


def graft_dataset_attr(data_parser: ModuleType) -> None:
    """Read an optional ``columns.score`` from dataset_info.json (score kept apart from the CoT text)."""
    dataset_attr = data_parser.DatasetAttr
    original_join = dataset_attr.join
    dataset_attr.score = None

    @wraps(original_join)
    def join(self, attr: dict[str, Any]) -> None:
        original_join(self, attr)
        self.score = attr.get("columns", {}).get(SCORE_COLUMN)
        if self.score and self.formatting != "alpaca":
            from llamafactory_tract.extras.errors import TractUserError

            raise TractUserError(
                f"Dataset '{self.dataset_name}': `columns.{SCORE_COLUMN}` is supported for alpaca-format datasets "
                f"only, this one is `formatting: {self.formatting}`."
            )

    dataset_attr.join = join


def graft_converter(converter: ModuleType) -> None:
    """Alpaca rows with a score column get ``[RESULT] <score>`` appended, the form cotraft parses."""
    alpaca = converter.AlpacaDatasetConverter
    original_call = alpaca.__call__

    @wraps(original_call)
    def __call__(self, example: dict[str, Any]) -> dict[str, Any]:
        output = original_call(self, example)
        score_column = getattr(self.dataset_attr, SCORE_COLUMN, None)
        if not score_column:
            return output
        if score_column not in example:
            from llamafactory_tract.extras.errors import TractUserError

            raise TractUserError(
                f"Dataset '{self.dataset_attr}': its dataset_info.json entry names the score column "
                f"'{score_column}' (`columns.{SCORE_COLUMN}`), which is not in the data; columns: {sorted(example)}."
            )
        score = example[score_column]
        if len(output["_response"]) == 1 and _has_value(score):
            response = output["_response"][0]
            output["_response"] = [{**response, "content": f"{response['content']} [RESULT] {score}"}]
        return output

    alpaca.__call__ = __call__


def _has_value(score: Any) -> bool:
    """A score cell that is not null, NaN or blank (an empty cell leaves the row without a score: dropped, named)."""
    if isinstance(score, float):
        return not math.isnan(score)
    return score is not None and bool(str(score).strip())


def graft_loader(loader: ModuleType) -> None:
    """For ``stage == 'cotraft'``: check the local files, tag rows with their origin, pick our processor,
    filter invalid rows.

    With ``streaming`` LLaMA-Factory turns a local file into a stream of ``dataloader_num_workers`` shards,
    zero by default, and then stops on a bare ``StopIteration`` (``converter.py``: the first row of an empty
    stream); ``cotraft`` reads such a file as one shard when there are no workers (the main process reads it).
    """
    original_merge = loader._get_merged_dataset

    @wraps(original_merge)
    def _get_merged_dataset(dataset_names, model_args, data_args, training_args, stage, return_dict=False):
        if stage != COTRAFT_STAGE or dataset_names is None:
            return original_merge(dataset_names, model_args, data_args, training_args, stage, return_dict)
        from llamafactory_tract.data.dataset_files import check_dataset_files
        from llamafactory_tract.data.row_origin import tag_row_origin

        check_dataset_files(dataset_names, data_args.dataset_dir)
        if data_args.streaming and training_args.dataloader_num_workers == 0:
            training_args = copy.copy(training_args)
            training_args.dataloader_num_workers = 1  # read as the number of shards only
        datasets = original_merge(dataset_names, model_args, data_args, training_args, stage, return_dict=True)
        datasets = {name: tag_row_origin(dataset, name) for name, dataset in datasets.items()}
        if return_dict:
            return datasets
        return loader.merge_dataset(list(datasets.values()), data_args, seed=training_args.seed)

    loader._get_merged_dataset = _get_merged_dataset
    original_processor = loader._get_dataset_processor

    @wraps(original_processor)
    def _get_dataset_processor(data_args, stage, template, tokenizer, processor, do_generate=False):
        if stage != COTRAFT_STAGE:
            return original_processor(data_args, stage, template, tokenizer, processor, do_generate)
        from llamafactory.data.parser import get_dataset_list

        from llamafactory_tract.data.processor import CoTRaftDatasetProcessor

        names = [*(data_args.dataset or []), *(data_args.eval_dataset or [])]
        attrs = get_dataset_list(names, data_args.dataset_dir)
        score_columns = {name: attr.score for name, attr in zip(names, attrs, strict=True) if attr.score}
        return CoTRaftDatasetProcessor(
            template=template,
            tokenizer=tokenizer,
            processor=processor,
            data_args=data_args,
            score_columns=score_columns,
        )

    loader._get_dataset_processor = _get_dataset_processor
    original_preprocess = loader._get_preprocessed_dataset

    @wraps(original_preprocess)
    def _get_preprocessed_dataset(
        dataset, data_args, training_args, stage, template, tokenizer, processor=None, is_eval=False
    ):
        dataset = original_preprocess(
            dataset, data_args, training_args, stage, template, tokenizer, processor, is_eval
        )
        if stage != COTRAFT_STAGE or dataset is None:
            return dataset
        from llamafactory_tract.data.validation import drop_invalid_rows

        dataset = drop_invalid_rows(dataset, data_args, is_eval)
        if not data_args.neat_packing or is_eval:  # evaluation rows stay single: per-row metrics
            return dataset
        from llamafactory_tract.data.packing import pack_judge_rows

        packer = original_processor(data_args, "sft", template, tokenizer, processor)
        return pack_judge_rows(dataset, lambda rows: _pack_encoded_rows(packer, rows), data_args, training_args)

    loader._get_preprocessed_dataset = _get_preprocessed_dataset


def _pack_encoded_rows(packer: Any, rows: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """LLaMA-Factory's ``PackedSupervisedDatasetProcessor`` packing rows that are already encoded.

    Its ``preprocess_dataset`` encodes each well-formed row with ``_encode_data_example`` and then
    packs; here that encoder hands back the ``cotraft`` encodings in order, and the converter columns
    it reads are given the one-prompt/one-response shape it checks for.
    """
    encodings = iter(zip(rows["input_ids"], rows["labels"], strict=True))
    packer._encode_data_example = lambda **_: [list(ids) for ids in next(encodings)]
    count = len(rows["input_ids"])
    examples = {
        "_prompt": [[{}]] * count,
        "_response": [[{}]] * count,
        "_system": [None] * count,
        "_tools": [None] * count,
        "_images": rows["images"],
        "_videos": rows["videos"],
        "_audios": rows["audios"],
    }
    packed = packer.preprocess_dataset(examples)
    if next(encodings, None) is not None:
        raise RuntimeError("LLaMA-Factory's packed processor skipped encoded cotraft rows")
    return packed


def graft_tuner(tuner: ModuleType) -> None:
    """Run ``stage: cotraft`` inside LLaMA-Factory's own ``_training_function``: only the stage call differs.

    Its callbacks (profilers, early stopping, SwanLab, reporter), Ray handling and process-group
    teardown are LLaMA-Factory's, so changes there reach our stage without edits here. Before the
    stage loads anything, the paths it reads and writes are checked. ``run_exp`` called from the
    command line (no ``args``: ``llamafactory-cli train``, and each torchrun process of it) ends a
    ``TractUserError`` with its message alone and exit status 2 (``TRACT_DEBUG=1``: the traceback).
    """
    original_get_train_args = tuner.get_train_args
    original_run_sft = tuner.run_sft
    original_run_exp = tuner.run_exp

    @wraps(original_get_train_args)
    def get_train_args(args=None):
        parsed = original_get_train_args(args)
        finetuning_args = parsed[3]
        if finetuning_args.stage == COTRAFT_STAGE:
            setattr(finetuning_args, DISPATCHED_AS, COTRAFT_STAGE)
            finetuning_args.stage = DISPATCH_STAGE
        return parsed

    @wraps(original_run_sft)
    def run_sft(model_args, data_args, training_args, finetuning_args, generating_args, callbacks=None):
        if getattr(finetuning_args, DISPATCHED_AS, None) != COTRAFT_STAGE:
            return original_run_sft(model_args, data_args, training_args, finetuning_args, generating_args, callbacks)
        from llamafactory_tract.extras.paths import check_adapter_sources, check_creatable_dir, check_model_source
        from llamafactory_tract.train.cotraft.workflow import run_cotraft

        finetuning_args.stage = COTRAFT_STAGE
        check_model_source(model_args.model_name_or_path, cache_dir=model_args.cache_dir)
        check_adapter_sources(model_args.adapter_name_or_path)
        check_creatable_dir(training_args.output_dir, "output_dir")
        return run_cotraft(model_args, data_args, training_args, finetuning_args, generating_args, callbacks)

    @wraps(original_run_exp)
    def run_exp(args=None, callbacks=None):
        if args is not None:
            return original_run_exp(args, callbacks)
        from llamafactory_tract.extras.errors import TractUserError, debug_requested, print_user_error

        try:
            return original_run_exp(args, callbacks)
        except TractUserError as error:
            if debug_requested():
                raise
            config = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1].endswith((".yaml", ".yml", ".json")) else ""
            sys.exit(print_user_error(f"llamafactory-cli train {config}".rstrip(), error))

    tuner.get_train_args = get_train_args
    tuner.run_sft = run_sft
    tuner.run_exp = run_exp


def graft_launcher(launcher: ModuleType) -> None:
    """``llamafactory-cli train`` under torchrun (several devices, ``FORCE_TORCHRUN``), ``stage: cotraft``: when its
    processes fail, end with their exit status, not with the launcher's ``CalledProcessError`` traceback.

    Each process has printed why (a user error as one line, see ``graft_tuner``; torchrun adds its own
    failure report). The parent does not parse the arguments itself: that would initialise CUDA in it.
    """
    original = launcher.launch

    @wraps(original)
    def launch():
        import subprocess

        try:
            return original()
        except subprocess.CalledProcessError as error:
            from llamafactory.hparams import read_args

            from llamafactory_tract.extras.errors import debug_requested

            if debug_requested() or _requested_stage(read_args()) != COTRAFT_STAGE:
                raise
            print(
                f"llamafactory-cli train: the training processes failed (torchrun exit status {error.returncode}); "
                "the first error above says why.",
                file=sys.stderr,
            )
            sys.exit(error.returncode)

    launcher.launch = launch


def graft_board_train_tab(train_tab: ModuleType) -> None:
    """LlamaBoard's train tab: CoT-RAFT in the stage choice and our keys as inputs, in an accordion of their own.

    The inputs are made before the tab and handed to it through ``engine.manager.get_base_elems``
    (the set the tab starts its inputs from), so the tab's own preview, start, save and load
    buttons carry them; they are registered as ``train.<key>`` like the tab's other elements.
    """
    original = train_tab.create_train_tab

    @wraps(original)
    def create_train_tab(engine):
        from llamafactory.webui.locales import LOCALES

        from llamafactory_tract.webui import cotraft_board as board

        train_tab.TRAINING_STAGES[board.STAGE_LABEL] = COTRAFT_STAGE
        LOCALES.update(board.locales())
        inputs = board.create_inputs()
        manager = engine.manager
        base_elems = manager.get_base_elems
        manager.get_base_elems = lambda: base_elems() | set(inputs.values())
        try:
            elem_dict = original(engine)
        finally:
            del manager.get_base_elems
        accordion = board.render_inputs(inputs, before=elem_dict["cmd_preview_btn"].parent)
        stage = elem_dict["training_stage"]
        stage.change(board.open_for_stage, [stage], [accordion], queue=False)
        return {**elem_dict, **inputs, board.ACCORDION: accordion}

    train_tab.create_train_tab = create_train_tab


def graft_board_runner(runner: ModuleType) -> None:
    """LlamaBoard's runner: a CoT-RAFT run's arguments get our keys (an effective batch replaces the accumulation)."""
    runner_class = runner.Runner
    original = runner_class._parse_train_args

    @wraps(original)
    def _parse_train_args(self, data):
        args = original(self, data)
        if args["stage"] != COTRAFT_STAGE:
            return args
        from llamafactory_tract.webui.cotraft_board import train_args

        extra_args = json.loads(data[self.manager.get_elem_by_id("train.extra_args")])
        ours = train_args(lambda key: data[self.manager.get_elem_by_id(f"train.{key}")])
        if "cotraft_effective_batch_size" in ours and "gradient_accumulation_steps" not in extra_args:
            del args["gradient_accumulation_steps"]  # derived from the effective batch
        args.update({key: value for key, value in ours.items() if key not in extra_args})
        return args

    runner_class._parse_train_args = _parse_train_args


def graft_board_commands(common: ModuleType) -> None:
    """LlamaBoard drops False values from the command and YAML it writes: keep ours whose default is True."""
    original = common._clean_cmd

    @wraps(original)
    def _clean_cmd(args: dict[str, Any]) -> dict[str, Any]:
        from llamafactory_tract.webui.cotraft_board import false_but_set

        cleaned, kept = original(args), false_but_set(args)
        return {key: value for key, value in args.items() if key in cleaned or key in kept}

    common._clean_cmd = _clean_cmd


def graft_board_loss_plot(control: ModuleType) -> None:
    """LlamaBoard's live loss curve also shows the CoT-RAFT loss parts when the run logs them."""
    original = control.gen_loss_plot

    @wraps(original)
    def gen_loss_plot(trainer_log: list[dict[str, Any]]):
        from llamafactory_tract.webui.cotraft_board import add_loss_parts

        return add_loss_parts(original(trainer_log), trainer_log)

    control.gen_loss_plot = gen_loss_plot


GRAFTS = {
    "llamafactory.launcher": graft_launcher,
    "llamafactory.hparams.parser": graft_parser,
    "llamafactory.data.parser": graft_dataset_attr,
    "llamafactory.data.converter": graft_converter,
    "llamafactory.data.loader": graft_loader,
    "llamafactory.train.tuner": graft_tuner,
    "llamafactory.webui.common": graft_board_commands,
    "llamafactory.webui.control": graft_board_loss_plot,
    "llamafactory.webui.runner": graft_board_runner,
    "llamafactory.webui.components.train": graft_board_train_tab,
}
