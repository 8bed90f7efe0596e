"""The ``cotraft`` stage's arguments, parsed by LLaMA-Factory's own parser."""

from llamafactory_tract.hparams.data_args import TractDataArguments
from llamafactory_tract.hparams.finetuning_args import COTRAFT_STAGE, TractFinetuningArguments

__all__ = ["COTRAFT_STAGE", "TractDataArguments", "TractFinetuningArguments"]
