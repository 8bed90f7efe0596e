"""The TRACT arguments, as an extension of LLaMA-Factory's ``FinetuningArguments``.

Subclassing (rather than a separate dataclass) keeps LLaMA-Factory's five-tuple of parsed
arguments intact, so every LLaMA-Factory code path keeps working, and puts our keys in
``llamafactory-cli train -h``.
"""

from dataclasses import dataclass, field
from typing import Literal

from llamafactory.hparams.finetuning_args import FinetuningArguments

from llamafactory_tract.data.score_format import DEFAULT_DELIMITER, DEFAULT_SCORE_VALUES, ScoreFormat
from llamafactory_tract.train.cotraft.chunked_loss import DEFAULT_CHUNK_SIZE

COTRAFT_STAGE = "cotraft"


@dataclass
class TractFinetuningArguments(FinetuningArguments):
    stage: Literal["pt", "sft", "rm", "ppo", "dpo", "kto", "cotraft"] = field(
        default="sft",
        metadata={"help": "Which stage will be performed in training (`cotraft`: CoT-RAFT, llamafactory-tract)."},
    )
    raft_lambda: float = field(
        default=1.0,
        metadata={"help": "[cotraft] Weight lambda of the squared-error (RAFT) term of the CoT-RAFT loss."},
    )
    score_delimiter: str = field(
        default=DEFAULT_DELIMITER,
        metadata={"help": "[cotraft] Text that ends every CoT and precedes the score token."},
    )
    score_values: str = field(
        default=",".join(DEFAULT_SCORE_VALUES),
        metadata={"help": "[cotraft] Comma-separated score values; each must be a single token after the delimiter."},
    )
    cotraft_drop_cot: bool = field(
        default=False,
        metadata={"help": "[cotraft] Train on the score alone, without CoT (RAFT, paper Table 2 row B.4)."},
    )
    cotraft_strict_data: bool = field(
        default=False,
        metadata={"help": "[cotraft] Stop with the list of invalid rows instead of dropping and reporting them."},
    )
    cotraft_score_in_ce: bool = field(
        default=False,
        metadata={
            "help": "[cotraft] Also train the score token with CE (standard fine-tuning; with raft_lambda: 0 this is "
            "the CE baseline of paper Table 2 rows B.1, B.2, A.2, A.3). Off: the score enters only via RAFT."
        },
    )
    cotraft_chunked_loss: bool = field(
        default=True,
        metadata={
            "help": "[cotraft] Compute the loss from the final hidden states in chunks, never materialising the "
            "full sequence x vocabulary logits (falls back, with a log line, where the model's logits are not a "
            "plain lm_head(hidden), e.g. softcapping, or the head is sharded by ZeRO-3/FSDP)."
        },
    )
    cotraft_loss_chunk_size: int = field(
        default=DEFAULT_CHUNK_SIZE,
        metadata={"help": "[cotraft] Labelled tokens per chunk of the chunked loss (one chunk x vocab buffer)."},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.raft_lambda < 0:
            raise ValueError(f"`raft_lambda` must be >= 0, got {self.raft_lambda}.")
        if self.cotraft_loss_chunk_size < 1:
            raise ValueError(f"`cotraft_loss_chunk_size` must be >= 1, got {self.cotraft_loss_chunk_size}.")
        _ = self.score_format  # validates delimiter and values at parse time

    @property
    def score_format(self) -> ScoreFormat:
        values = self.score_values if isinstance(self.score_values, (list, tuple)) else self.score_values.split(",")
        return ScoreFormat(delimiter=self.score_delimiter, values=tuple(str(value).strip() for value in values))
