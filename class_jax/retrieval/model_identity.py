"""Which model made an index: a hash of its configuration and a fingerprint of its parameters.

An index is only meaningful with the model that encoded it (queries must be encoded by the same retriever), so
the index records both and every reader compares them. Hashing every parameter of mT5-large would mean moving
4.9 GB to the host; instead the fingerprint covers every small parameter (layer-norm scales, relative position
biases: all of them change in any training step) and the whole retrieval head, which together tell apart any two
checkpoints met in practice at the cost of a few MB.
"""

import dataclasses
import hashlib
import json
from typing import Any, Mapping

import jax
from jax.experimental import multihost_utils
import numpy as np

from class_jax.checkpoints import params_io
from class_jax.models.config import ModelConfig
from class_jax.runtime import tree_paths

# Parameters with at most this many elements are fingerprinted (norm scales, relative position biases).
SMALL_PARAMETER_SIZE = 1 << 16
# Parameters below this path prefix are fingerprinted whatever their size (the pooled retrieval head).
RETRIEVAL_HEAD_PREFIX = "encoder/retriever/"


@dataclasses.dataclass(frozen=True)
class ModelIdentity:
    """What an index records about its model.

    Attributes:
      config_hash: sha256 of the ModelConfig as canonical JSON (`config_hash`).
      params_fingerprint: sha256 over the fingerprinted parameters (paths, shapes and float32 bytes).
      checkpoint: where the parameters were read (informational; a moved checkpoint is the same model).
      retrieval_mode: the retriever kind's name (`retrievers.known_kinds()`: "pooled" or "token").
    """

    config_hash: str
    params_fingerprint: str
    checkpoint: str
    retrieval_mode: str

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def same_model(self, other: Mapping[str, Any]) -> bool:
        """Whether a recorded identity (its JSON) names the same configuration and parameters."""
        return (other.get("config_hash") == self.config_hash
                and other.get("params_fingerprint") == self.params_fingerprint)


# ModelConfig fields that choose how the network trains or executes, not the vectors its retriever computes: an
# index stays valid when a checkpoint is served with another remat policy, attention kernel or dropout. The pair
# layout acts above B only, and query normalisation on the query side only, so neither changes an index's vectors.
EXECUTION_FIELDS = frozenset({"remat_policy", "attention_kernel", "dropout_rate", "attention_dropout_rate",
                              "retrieval_target_dropout", "pair_layout", "normalize_queries"})


def config_hash(config: ModelConfig) -> str:
    """sha256 of the configuration's canonical JSON, without its `EXECUTION_FIELDS`."""
    described = {key: value for key, value in params_io.config_to_json(config).items()
                 if key not in EXECUTION_FIELDS}
    text = json.dumps(described, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _host_value(leaf: Any) -> np.ndarray:
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
        # A parameter sharded across hosts: every process gathers it (collective; all processes call this).
        return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))
    return np.asarray(jax.device_get(leaf))


def params_fingerprint(params: Any) -> str:
    """sha256 over the small parameters and the retrieval head, in path order.

    Args:
      params: the nested parameter tree (numpy or jax arrays, sharded or not).

    Returns:
      The hex digest.
    """
    digest = hashlib.sha256()
    for path, leaf in sorted(tree_paths.flatten_with_paths(params).items()):
        if np.size(leaf) > SMALL_PARAMETER_SIZE and not path.startswith(RETRIEVAL_HEAD_PREFIX):
            continue
        value = np.ascontiguousarray(_host_value(leaf), dtype=np.float32)
        digest.update(f"{path}:{value.shape};".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def model_identity(config: ModelConfig, params: Any, checkpoint: str) -> ModelIdentity:
    """The identity of a loaded model."""
    return ModelIdentity(config_hash=config_hash(config), params_fingerprint=params_fingerprint(params),
                         checkpoint=str(checkpoint), retrieval_mode=config.retrieval_mode)
