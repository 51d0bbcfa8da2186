"""A params directory read for retrieval and reading: its vocabulary, and the model placed on the mesh."""

import dataclasses
import hashlib
import pathlib
from typing import Any, Optional

from class_jax.checkpoints import params_io
from class_jax.runtime.errors import UserError
from class_jax.models.class_model import CLASSModel
from class_jax.models.config import ModelConfig
from class_jax.retrieval.model_identity import ModelIdentity, model_identity
from class_jax.runtime import partitioning
from class_jax.trainer import train_state

PyTree = Any


@dataclasses.dataclass
class LoadedModel:
    """A model with its parameters placed on the mesh."""

    model: CLASSModel
    params: PyTree
    config: ModelConfig
    identity: ModelIdentity
    partitioner: partitioning.Partitioner


def load_vocabulary(path: Optional[str], checkpoint: str) -> tuple[Any, str]:
    """The sentencepiece vocabulary and the sha256 of its file.

    Raises:
      UserError: no vocabulary file.
    """
    import seqio  # pylint: disable=import-outside-toplevel  (pulls in TensorFlow)

    file = pathlib.Path(path) if path else pathlib.Path(checkpoint) / params_io.SPIECE_FILE
    if not file.is_file():
        raise UserError(f"{file}: no such sentencepiece model" + ("" if path else " in the checkpoint; pass --vocab"))
    data = file.read_bytes()
    try:
        vocabulary = seqio.SentencePieceVocabulary(str(file))
        vocabulary.eos_id  # pylint: disable=pointless-statement  (loads the model: fail here, not mid-run)
    except Exception as e:  # pylint: disable=broad-except  (sentencepiece raises bare RuntimeErrors)
        raise UserError(f"{file}: not a sentencepiece model ({e})") from e
    return vocabulary, hashlib.sha256(data).hexdigest()


def load_model(checkpoint: str, partitioner: partitioning.Partitioner, vocabulary: Any) -> LoadedModel:
    """Reads a params directory straight into the partitioner's shardings.

    Raises:
      UserError: not a params directory, or a vocabulary larger than the model's embedding.
    """
    path = pathlib.Path(checkpoint).absolute()
    config = params_io.load_config(path)
    if vocabulary.vocab_size > config.vocab_size:
        raise UserError(f"the vocabulary has {vocabulary.vocab_size} pieces but {path} embeds only "
                        f"{config.vocab_size}: wrong --vocab for this checkpoint")
    model = CLASSModel(config)
    abstract, _ = train_state.build_param_layout(model, partitioner, CLASSModel.init_shapes())
    params, _ = params_io.load_params(path, target=abstract)
    return LoadedModel(model=model, params=params, config=config, identity=model_identity(config, params, str(path)),
                       partitioner=partitioner)
