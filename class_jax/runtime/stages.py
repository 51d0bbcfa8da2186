"""The one vocabulary of stage names: gin files, `class-jax` flags, FiD task kinds, losses and mining all use it.

    clr_pt             stage 1, cross-lingual retrieval pre-training (clozes + teacher passages and scores)
    mlqa_pt            stage 2, multilingual QA pre-training (generated questions + retrieved passages)
    finetune           fine-tuning on question / answer data (NQ, XOR-Full, XOR-Retrieve)
    xor_full_eval      XOR-Full answers scored by F1 / EM / BLEU
    mkqa_eval          MKQA answers scored by F1
    xor_retrieve_eval  XOR-Retrieve passages scored by R@2kt / R@5kt

Older names are still read, with a FutureWarning that names the new spelling (see ALIASES): "anchor_qa" (the FiD
kind and refresh kind of stage 2), "qa" (the FiD kind of fine-tuning), "reader" (LossConfig.stage of stages 2 and 3,
which share a loss) and "questions" (`class-jax build-fid --kind`). Pure Python: importing it costs nothing.
"""

import enum
from typing import Iterable, Optional
import warnings


class Stage(str, enum.Enum):
    """A stage of the method; its value is the name written in gin, on command lines and in files."""

    CLR_PT = "clr_pt"
    MLQA_PT = "mlqa_pt"
    FINETUNE = "finetune"
    XOR_FULL_EVAL = "xor_full_eval"
    MKQA_EVAL = "mkqa_eval"
    XOR_RETRIEVE_EVAL = "xor_retrieve_eval"

    def __str__(self) -> str:
        return self.value

    def __format__(self, format_spec: str) -> str:
        return format(self.value, format_spec)

    @property
    def is_eval(self) -> bool:
        """True for the scored evaluation stages (they decode towards the first answer and train nothing)."""
        return self in EVAL_STAGES


TRAINING_STAGES = (Stage.CLR_PT, Stage.MLQA_PT, Stage.FINETUNE)
EVAL_STAGES = (Stage.XOR_FULL_EVAL, Stage.MKQA_EVAL, Stage.XOR_RETRIEVE_EVAL)

# Deprecated name -> the stage it means. Read with a FutureWarning; never written.
ALIASES: dict[str, Stage] = {
    "anchor_qa": Stage.MLQA_PT,
    "qa": Stage.FINETUNE,
    "reader": Stage.FINETUNE,
    "questions": Stage.FINETUNE,
}


def names(stages: Optional[Iterable[Stage]] = None) -> tuple[str, ...]:
    """The names of `stages` (default: every stage), in declaration order."""
    return tuple(stage.value for stage in (Stage if stages is None else stages))


def parse(name: "str | Stage", *, allowed: Optional[Iterable[Stage]] = None, what: str = "stage",
          warn: bool = True) -> Stage:
    """The stage `name` names, reading the deprecated aliases.

    Args:
      name: a stage name ("mlqa_pt"), a deprecated alias ("anchor_qa") or a Stage.
      allowed: the stages accepted here (default: all); the error lists them.
      what: what the name is, for messages (e.g. "FiD task kind", "--kind").
      warn: emit a FutureWarning for a deprecated alias. False for names read back from files written by older
        versions, which the user cannot change.

    Returns:
      The Stage.

    Raises:
      ValueError: an unknown name, or a stage not in `allowed`; the one-line message lists the valid names.
    """
    allowed = tuple(Stage) if allowed is None else tuple(allowed)
    if isinstance(name, Stage):
        stage = name
    elif isinstance(name, str) and name in ALIASES:
        stage = ALIASES[name]
        if warn:
            warnings.warn(f"{what} {name!r} is a deprecated name; write {stage.value!r} instead", FutureWarning,
                          stacklevel=2)
    else:
        try:
            stage = Stage(name)
        except ValueError:
            stage = None
    if stage is None or stage not in allowed:
        raise ValueError(f"unknown {what} {name!r}; expected one of: {', '.join(names(allowed))}")
    return stage
