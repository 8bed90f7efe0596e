"""Everything llamafactory-tract grafts onto LLaMA-Factory 0.9.5, one function per module.

Each graft wraps a module attribute and defers to the original for every other stage, so
``pt``/``sft``/``rm``/``ppo``/``dpo``/``kto`` behave exactly as before. LLaMA-Factory is only
imported inside the functions: this module is loaded at interpreter start-up.
"""

from functools import wraps
from types import ModuleType
from typing import Any

COTRAFT_STAGE = "cotraft"
SCORE_COLUMN = "score"


def graft_parser(parser: ModuleType) -> None:
    """Parse ``stage: cotraft`` and our keys (and list them in ``-h``) via a FinetuningArguments subclass.

    The subclass is swapped in when arguments are first parsed, not at import: our hparams module
    imports LLaMA-Factory, which may be what is importing this parser right now.
    """
    original = parser._parse_train_args

    @wraps(original)
    def _parse_train_args(args=None):
        from llamafactory_tract.hparams.finetuning_args import TractFinetuningArguments

        if TractFinetuningArguments not in parser._TRAIN_ARGS:
            parser._TRAIN_ARGS[parser._TRAIN_ARGS.index(parser.FinetuningArguments)] = TractFinetuningArguments
        return original(args)

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

    dataset_attr.join = join


def graft_converter(converter: ModuleType) -> None:
    """Alpaca rows with a score column get ``[RESULT] <score>`` appended, the form cotraft parses."""
    alpaca = converter.AlpacaDatasetConverter
    original_call = alpaca.__call__

    @wraps(original_call)
    def __call__(self, example: dict[str, Any]) -> dict[str, Any]:
        output = original_call(self, example)
        score_column = getattr(self.dataset_attr, SCORE_COLUMN, None)
        score = example.get(score_column) if score_column else None
        if score_column and len(output["_response"]) == 1 and score is not None and str(score).strip():
            response = output["_response"][0]
            output["_response"] = [{**response, "content": f"{response['content']} [RESULT] {score}"}]
        return output

    alpaca.__call__ = __call__


def graft_loader(loader: ModuleType) -> None:
    """For ``stage == 'cotraft'``: tag rows with their origin, and preprocess with the validating processor."""
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
    original = loader._get_preprocessed_dataset

    @wraps(original)
    def _get_preprocessed_dataset(
        dataset, data_args, training_args, stage, template, tokenizer, processor=None, is_eval=False
    ):
        if stage != COTRAFT_STAGE:
            return original(dataset, data_args, training_args, stage, template, tokenizer, processor, is_eval)
        if dataset is None:
            return None
        from llamafactory_tract.data.preprocess import preprocess_cotraft_dataset
        from llamafactory_tract.data.preprocess_context import active_cotraft_preprocessing

        active = active_cotraft_preprocessing()
        return preprocess_cotraft_dataset(
            dataset,
            data_args,
            training_args,
            template,
            tokenizer,
            processor,
            score_tokens=active.score_tokens,
            strict=active.strict,
            score_in_ce=active.score_in_ce,
            is_eval=is_eval,
        )

    loader._get_preprocessed_dataset = _get_preprocessed_dataset


def requested_stage(args: dict[str, Any] | list[str]) -> str | None:
    """The ``stage`` a train command asks for, from a YAML/dict config or ``--stage`` CLI flags."""
    if isinstance(args, dict):
        return args.get("stage")
    for index, arg in enumerate(args):
        if arg.startswith("--stage="):
            return arg.split("=", 1)[1]
        if arg == "--stage" and index + 1 < len(args):
            return args[index + 1]
    return None


def graft_tuner(tuner: ModuleType) -> None:
    """Dispatch ``stage: cotraft`` to ``run_cotraft`` with the callbacks LLaMA-Factory gives every stage."""
    original = tuner._training_function

    @wraps(original)
    def _training_function(config: dict[str, Any]) -> None:
        if requested_stage(tuner.read_args(config.get("args"))) != COTRAFT_STAGE:
            return original(config)
        from llamafactory_tract.train.cotraft.callbacks import TractLogCallback
        from llamafactory_tract.train.cotraft.workflow import run_cotraft

        model_args, data_args, training_args, finetuning_args, generating_args = tuner.get_train_args(
            config.get("args")
        )
        callbacks = config.get("callbacks")
        callbacks.append(TractLogCallback())
        if finetuning_args.pissa_convert:
            callbacks.append(tuner.PissaConvertCallback())
        if finetuning_args.use_swanlab:
            callbacks.append(tuner.get_swanlab_callback(finetuning_args))
        if finetuning_args.early_stopping_steps is not None:
            callbacks.append(tuner.EarlyStoppingCallback(early_stopping_patience=finetuning_args.early_stopping_steps))
        callbacks.append(tuner.ReporterCallback(model_args, data_args, finetuning_args, generating_args))
        run_cotraft(model_args, data_args, training_args, finetuning_args, generating_args, callbacks)
        if tuner.dist.is_initialized():
            tuner.dist.destroy_process_group()

    tuner._training_function = _training_function


GRAFTS = {
    "llamafactory.hparams.parser": graft_parser,
    "llamafactory.data.parser": graft_dataset_attr,
    "llamafactory.data.converter": graft_converter,
    "llamafactory.data.loader": graft_loader,
    "llamafactory.train.tuner": graft_tuner,
}
