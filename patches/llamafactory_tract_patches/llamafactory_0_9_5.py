"""Everything llamafactory-tract grafts onto LLaMA-Factory 0.9.5, one function per module.

Each graft wraps a module attribute and defers to the original: other stages behave exactly as
before, and ``stage: cotraft`` runs through LLaMA-Factory's own code (argument checks, callbacks,
profilers, dataset loading, caching, Ray and process-group teardown) except where it must differ.
LLaMA-Factory is only imported inside the functions: this module is loaded at interpreter start-up.
"""

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


def graft_parser(parser: ModuleType) -> None:
    """Parse ``stage: cotraft`` and our keys (listed in ``-h``) via subclasses of Data/FinetuningArguments.

    The subclasses are swapped in when arguments are first parsed, not at import: our hparams
    module imports LLaMA-Factory, which may be what is importing this parser right now. With
    ``cotraft_effective_batch_size`` the arguments are parsed again with the derived
    ``gradient_accumulation_steps``, so everything computed from it (DeepSpeed's batch) agrees.
    """
    original = parser._parse_train_args

    @wraps(original)
    def _parse_train_args(args=None):
        from llamafactory_tract.hparams import TractDataArguments, TractFinetuningArguments
        from llamafactory_tract.hparams.effective_batch import derived_gradient_accumulation

        swaps = {parser.DataArguments: TractDataArguments, parser.FinetuningArguments: TractFinetuningArguments}
        for base, ours in swaps.items():
            if ours not in parser._TRAIN_ARGS:
                parser._TRAIN_ARGS[parser._TRAIN_ARGS.index(base)] = ours
        args = parser.read_args(args)
        parsed = original(args)
        _, _, training_args, finetuning_args, _ = parsed
        steps = derived_gradient_accumulation(training_args, finetuning_args)
        if steps is None or steps == training_args.gradient_accumulation_steps:
            return parsed
        return original(_with_override(args, "gradient_accumulation_steps", steps))

    parser._parse_train_args = _parse_train_args


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
            raise ValueError(
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
            raise ValueError(
                f"Dataset '{self.dataset_attr}': its dataset_info.json entry names the score column "
                f"'{score_column}' (`columns.{SCORE_COLUMN}`), which is not in the data; columns: {sorted(example)}."
            )
        score = example[score_column]
        if len(output["_response"]) == 1 and score is not None and str(score).strip():
            response = output["_response"][0]
            output["_response"] = [{**response, "content": f"{response['content']} [RESULT] {score}"}]
        return output

    alpaca.__call__ = __call__


def graft_loader(loader: ModuleType) -> None:
    """For ``stage == 'cotraft'``: tag rows with their origin, pick our processor, filter invalid rows."""
    original_merge = loader._get_merged_dataset

    @wraps(original_merge)
    def _get_merged_dataset(dataset_names, model_args, data_args, training_args, stage, return_dict=False):
        if stage != COTRAFT_STAGE or dataset_names is None:
            return original_merge(dataset_names, model_args, data_args, training_args, stage, return_dict)
        from llamafactory_tract.data.row_origin import tag_row_origin

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
        from llamafactory_tract.data.processor import CoTRaftDatasetProcessor

        return CoTRaftDatasetProcessor(
            template=template, tokenizer=tokenizer, processor=processor, data_args=data_args
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

        return drop_invalid_rows(dataset, data_args, is_eval)

    loader._get_preprocessed_dataset = _get_preprocessed_dataset


def graft_tuner(tuner: ModuleType) -> None:
    """Run ``stage: cotraft`` inside LLaMA-Factory's own ``_training_function``: only the stage call differs.

    Its callbacks (profilers, early stopping, SwanLab, reporter), Ray handling and process-group
    teardown are LLaMA-Factory's, so changes there reach our stage without edits here.
    """
    original_get_train_args = tuner.get_train_args
    original_run_sft = tuner.run_sft

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
        from llamafactory_tract.train.cotraft.workflow import run_cotraft

        finetuning_args.stage = COTRAFT_STAGE
        return run_cotraft(model_args, data_args, training_args, finetuning_args, generating_args, callbacks)

    tuner.get_train_args = get_train_args
    tuner.run_sft = run_sft


GRAFTS = {
    "llamafactory.hparams.parser": graft_parser,
    "llamafactory.data.parser": graft_dataset_attr,
    "llamafactory.data.converter": graft_converter,
    "llamafactory.data.loader": graft_loader,
    "llamafactory.train.tuner": graft_tuner,
}
