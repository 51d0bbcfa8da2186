"""DEPRECATED_ALIAS: `class_jax.retrieval.refresh` moved to `class_jax.fid.refresh`; the alias goes in the next release.

Kept so that gin files written for the old layout
(`from class_jax.retrieval import refresh`) still parse.
"""

import sys
import warnings

from class_jax.fid import refresh as _moved

warnings.warn("class_jax.retrieval.refresh is deprecated: import class_jax.fid.refresh instead", FutureWarning,
              stacklevel=2)
sys.modules[__name__] = _moved
