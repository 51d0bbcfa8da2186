"""What the demo runs: the wiki size, the vocabulary, steps per stage and evaluation depths.

Two presets: `default` (the README's demo: about ten minutes on two CPU cores) and `quick` (a smaller wiki and a
few steps per stage, for tests). The training stages read the demo gin files (gin/demo/*.gin); the settings here
only override steps, warm-up and refresh periods, which the presets scale together.
"""

import dataclasses
from typing import Any

from class_jax.demo.world.language import DEFAULT_LANGUAGES


@dataclasses.dataclass(frozen=True)
class StageSteps:
    """Training length of one stage.

    Attributes:
      train_steps: optimizer steps.
      warmup_steps: linear warm-up steps (stage 1 warms up for 10% as in the paper; the others start warm).
      refresh_every: steps between passage refreshes (stages with refresh; None: no refresh).
      log_period: steps between logged metrics (the loss curves' resolution).
    """

    train_steps: int
    warmup_steps: int = 0
    refresh_every: int | None = None
    log_period: int = 10


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """Everything that differs between demo presets.

    Attributes:
      preset: the preset's name (recorded in the report).
      wiki_size: `class-jax make-demo-wiki --size`.
      seed: wiki generator and training seed.
      languages: wiki languages, English first.
      vocab_size: SentencePiece pieces (also the model's embedding rows).
      clr_pt / mlqa_pt / finetune: the three training stages.
      retrieve_depth: passages retrieved per XOR-Retrieve question (covers R@5kt's 5,000 tokens of 100-word
        passages).
      recall_at: passage-count recall cut-offs reported next to the official token budgets.
    """

    preset: str
    wiki_size: str
    seed: int = 0
    languages: tuple[str, ...] = DEFAULT_LANGUAGES
    vocab_size: int = 2000
    clr_pt: StageSteps = StageSteps(1500, warmup_steps=150, log_period=20)
    mlqa_pt: StageSteps = StageSteps(300, refresh_every=100, log_period=20)
    finetune: StageSteps = StageSteps(300, refresh_every=100, log_period=20)
    retrieve_depth: int = 100
    recall_at: tuple[int, ...] = (1, 5, 20)

    @property
    def target_languages(self) -> tuple[str, ...]:
        """The non-English languages: CLR-PT pairs, MLQA-PT questions and the evaluated questions."""
        return tuple(lang for lang in self.languages if lang != "en")

    def to_json(self) -> dict[str, Any]:
        """The settings as recorded in the report and checked on resumption."""
        return dataclasses.asdict(self)


PRESETS = {
    "default": DemoSettings(preset="default", wiki_size="default"),
    "quick": DemoSettings(preset="quick", wiki_size="small", vocab_size=1000,
                          clr_pt=StageSteps(30, warmup_steps=3, log_period=5),
                          mlqa_pt=StageSteps(10, refresh_every=5, log_period=5),
                          finetune=StageSteps(10, refresh_every=5, log_period=5),
                          retrieve_depth=20),
}
