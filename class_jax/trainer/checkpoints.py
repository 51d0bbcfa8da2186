"""DEPRECATED_ALIAS: `class_jax.trainer.checkpoints` moved to `class_jax.trainer.checkpointer`; the alias goes in the next release.

Kept so that gin files written for the old layout
(`from class_jax.trainer import checkpoints`) still parse.
"""

import sys
import warnings

from class_jax.trainer import checkpointer as _moved

warnings.warn("class_jax.trainer.checkpoints is deprecated: import class_jax.trainer.checkpointer instead", FutureWarning,
              stacklevel=2)
sys.modules[__name__] = _moved
