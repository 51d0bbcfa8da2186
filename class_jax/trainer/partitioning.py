"""DEPRECATED_ALIAS: `class_jax.trainer.partitioning` moved to `class_jax.runtime.partitioning`; the alias goes in the next release.

Kept so that gin files written for the old layout
(`from class_jax.trainer import partitioning`) still parse.
"""

import sys
import warnings

from class_jax.runtime import partitioning as _moved

warnings.warn("class_jax.trainer.partitioning is deprecated: import class_jax.runtime.partitioning instead", FutureWarning,
              stacklevel=2)
sys.modules[__name__] = _moved
