"""Retriever kinds: what retrieval reads from encoder layer B, what it stores per text, and how it scores.

`ModelConfig.retrieval_mode` names a kind; `get_retriever(config)` (or `retriever_for(mode)`) returns it. Every
place that depends on the kind (the network's read-out and head, the model's scores and losses, the parameter
layout, the Hugging Face tensor names and config keys, the index arrays and the index search) asks the kind
instead of comparing mode strings, so a new kind is one class here plus `register`.

Two kinds ship:
  * "pooled" (`PooledRetriever`, CLASS): masked mean of layer B's pre-attention RMSNorm output ->
    `query_proj` / `passage_proj` -> shared RMSNorm; one [heads * head_dim] vector per text, dot-product scores.
  * "token" (`TokenRetriever`, ReAtt): one head's per-token Q (queries) / K (passages) at layer B; [len, head_dim]
    per text, ColBERT max-sim scores (optionally + layer B's relative position bias, / query length).
"""

from typing import Any, Callable, ClassVar, Mapping, MutableMapping, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from class_jax.models import layers
from class_jax.models import scoring
from class_jax.models.config import ModelConfig
from class_jax.models.layers import EMBED, JOINED_KV
from class_jax.runtime.errors import UserError

Array = jax.Array
PyTree = Any
Shape = tuple[int, ...]
# (Hugging Face tensor name template, our parameter path, transpose); `{B}` is the retriever layer.
HfTensorRule = tuple[str, str, bool]
# (query positions, key positions) -> the encoder's relative position bias [heads, q, k].
RelativeBias = Callable[[np.ndarray, np.ndarray], Array]
# (queries, a block of index rows {array name: [rows, ...]}) -> [queries, rows] float32 scores.
BlockScorer = Callable[[PyTree, dict[str, Array]], Array]

# The `architectures` entry of the released CLASS models' config.json.
CLASS_ARCHITECTURE = "RRForConditionalGeneration"


class PooledHead(nn.Module):
    """Pooled retrieval head: masked mean → query_proj / passage_proj → shared RMSNorm (CLASS "pooled" mode)."""

    config: ModelConfig

    @nn.compact
    def __call__(self, normed: Array, valid: Array, is_query: bool) -> Array:
        """Returns retrieval vectors [batch, heads * head_dim] (float32) from layer B's normed input."""
        cfg = self.config
        init = nn.initializers.variance_scaling(1.0, "fan_in", "normal")
        weights = valid.astype(jnp.float32)[..., None]
        pooled = jnp.sum(normed.astype(jnp.float32) * weights, axis=-2) / jnp.maximum(
            jnp.sum(weights, axis=-2), 1.0)
        query_proj = layers.dense(cfg.retrieval_dim, (EMBED, JOINED_KV), init, jnp.float32, "query_proj")
        passage_init = init
        if cfg.identical_projection_init:
            # Called only while initialising, after query_proj has been created below.
            passage_init = lambda *_: nn.unbox(query_proj.variables["params"]["kernel"])  # noqa: E731
        passage_proj = layers.dense(cfg.retrieval_dim, (EMBED, JOINED_KV), passage_init, jnp.float32, "passage_proj")
        if self.is_initializing():  # create both projections whichever side is encoded first
            query_proj(pooled), passage_proj(pooled)
        projected = query_proj(pooled) if is_query else passage_proj(pooled)
        return layers.RMSNorm(cfg.layer_norm_epsilon, jnp.float32, axis_name=JOINED_KV, name="layer_norm")(projected)


class RetrieverKind:
    """One way of retrieving with the first B encoder layers. Subclass it and `register` an instance.

    Class attributes:
      name: the `ModelConfig.retrieval_mode` value that selects the kind.
      index_arrays: the arrays an index stores per shard, name -> rank of the [rows, ...] array, in file order.
      param_paths: the parameters the kind adds to the model (flat paths); none of them is in public T5 / mT5
        checkpoints, so importers may create them.
      hf_config_keys: the Hugging Face config.json keys the kind reads or writes.
      inner_product_index: index rows are single vectors scored by inner products (faiss can search them).
    """

    name: ClassVar[str] = ""
    index_arrays: ClassVar[dict[str, int]] = {}
    param_paths: ClassVar[tuple[str, ...]] = ()
    hf_config_keys: ClassVar[tuple[str, ...]] = ()
    inner_product_index: ClassVar[bool] = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    # ------------------------------------------------------------------------------------------- config
    def validate(self, config: ModelConfig) -> None:
        """Raises ValueError naming the field when `config` does not suit this kind."""
        del config

    # ------------------------------------------------------------------------------------------ network
    def make_head(self, config: ModelConfig) -> Optional[nn.Module]:
        """The Flax module (named `encoder/retriever`) holding the kind's parameters, or None without any.

        Called inside `Encoder.setup`.
        """
        del config
        return None

    def layer_readout(self, config: ModelConfig, attention: nn.Module, normed: Array) -> dict[str, Array]:
        """What the kind reads at layer B besides its pre-attention RMSNorm output ("normed").

        Args:
          config: the model.
          attention: layer B's self-attention module.
          normed: [batch, length, emb] layer B's pre-attention RMSNorm output.

        Returns:
          Extra read-out entries (each with leading dims [batch, length]).
        """
        del config, attention, normed
        return {}

    def vectors(self, config: ModelConfig, head: Optional[nn.Module], readout: Mapping[str, Array],
                is_query: bool) -> dict[str, Array]:
        """A side's retrieval representation from a read-out (leading dims are kept).

        Args:
          config: the model.
          head: the module `make_head` made (None without one).
          readout: {"normed", "valid" and the `layer_readout` entries}.
          is_query: query side or passage side.

        Returns:
          The representation `score` takes.
        """
        raise NotImplementedError

    def vector_shape(self, config: ModelConfig, length: int) -> Shape:
        """Shape of one text's retrieval vectors (a text of `length` tokens)."""
        raise NotImplementedError

    def head_flops(self, config: ModelConfig, num_texts: int) -> int:
        """Forward matmul FLOPs of the head over `num_texts` texts (beyond the encoder layers)."""
        del config, num_texts
        return 0

    # ------------------------------------------------------------------------------------------ scoring
    def position_bias(self, config: ModelConfig, relative_bias: Optional[RelativeBias], query_len: int,
                      passage_len: int, offset: int) -> Optional[Array]:
        """The [query_len, passage_len] bias the kind adds to its scores, or None.

        Args:
          config: the model.
          relative_bias: the encoder's relative position bias (None: not available).
          query_len: query tokens.
          passage_len: passage tokens.
          offset: the position of the first passage token (the query slot length).
        """
        del config, relative_bias, query_len, passage_len, offset
        return None

    def score(self, config: ModelConfig, queries: PyTree, passages: PyTree,
              relative_bias: Optional[RelativeBias] = None, query_length: Optional[int] = None,
              chunk_size: Optional[int] = None) -> Array:
        """Every query against every passage: [queries, passages] float32.

        Args:
          config: the model.
          queries: `vectors` of the query side.
          passages: `vectors` of the passage side (extra leading dims are flattened).
          relative_bias: the encoder's relative position bias, for kinds whose scores use it.
          query_length: the query slot length Lq (passage positions start there); None: the queries' length.
          chunk_size: passages scored at a time, for kinds whose scores need bounded memory.
        """
        raise NotImplementedError

    def own_scores(self, config: ModelConfig, queries: PyTree, passages: PyTree,
                   relative_bias: Optional[RelativeBias] = None, chunk_size: Optional[int] = None) -> Array:
        """Each query against its own k passages: queries with leading dim [B], passages [B, k] -> [B, k]."""

        def one_query(query: PyTree, own: PyTree) -> Array:
            single = jax.tree_util.tree_map(lambda x: x[None], query)
            return self.score(config, single, own, relative_bias, chunk_size=chunk_size)[0]

        return jax.vmap(one_query)(queries, passages)

    # ---------------------------------------------------------------------------------- parameter layout
    def param_shapes(self, config: ModelConfig) -> dict[str, Shape]:
        """The parameters the kind adds, path -> shape (`param_layout.expected_shapes` places them)."""
        del config
        return {}

    def hf_tensor_rules(self, config: ModelConfig) -> tuple[HfTensorRule, ...]:
        """Hugging Face tensor names of the kind's parameters (already formatted for `config`).

        Raises:
          UserError: the HF layout cannot hold the kind's parameters for this config.
        """
        del config
        return ()

    def write_hf_config(self, config: ModelConfig, hf: MutableMapping[str, Any]) -> None:
        """Writes the kind's keys (and architectures) into an HF config.json dict; other kinds' keys are gone."""
        del config, hf

    # ----------------------------------------------------------------------------------------------- index
    def index_dim(self, config: ModelConfig) -> int:
        """The last dimension of the stored vectors (the index's `dim`)."""
        raise NotImplementedError

    def index_rows(self, side: Mapping[str, Array], dtype: Any) -> dict[str, Array]:
        """What an index stores for a batch of passages (`index_arrays`), from their `vectors` (jnp ops)."""
        raise NotImplementedError

    def queries_from_index_rows(self, rows: Mapping[str, np.ndarray]) -> PyTree:
        """The query representation searchers take, from `index_rows` of queries (numpy)."""
        raise NotImplementedError

    def index_scorer(self, config: ModelConfig, position_bias: Optional[Array]) -> Optional[BlockScorer]:
        """The block scorer of index search; None: the searchers' exact inner product of "vectors" rows."""
        del config, position_bias
        return None


class PooledRetriever(RetrieverKind):
    """CLASS: mean-pooled, projected and normalised vectors ([heads * head_dim] per text), dot-product scores."""

    name = "pooled"
    index_arrays = {"vectors": 2}
    param_paths = (
        "encoder/retriever/query_proj/kernel",
        "encoder/retriever/passage_proj/kernel",
        "encoder/retriever/layer_norm/scale",
    )
    hf_config_keys = ("retriever_layer",)
    inner_product_index = True
    # The released CLASS models keep the head inside block B's self-attention module; that
    # `SelfAttention.layer_norm` is the head's shared norm, not the block's own `layer.0.layer_norm`.
    _HF_RULES = (
        ("encoder.block.{B}.layer.0.SelfAttention.query_proj.weight", "encoder/retriever/query_proj/kernel", True),
        ("encoder.block.{B}.layer.0.SelfAttention.passage_proj.weight", "encoder/retriever/passage_proj/kernel",
         True),
        ("encoder.block.{B}.layer.0.SelfAttention.layer_norm.weight", "encoder/retriever/layer_norm/scale", False),
    )

    def make_head(self, config: ModelConfig) -> Optional[nn.Module]:
        return PooledHead(config)

    def vectors(self, config: ModelConfig, head: Optional[nn.Module], readout: Mapping[str, Array],
                is_query: bool) -> dict[str, Array]:
        return {"vectors": head(readout["normed"], readout["valid"], is_query)}

    def vector_shape(self, config: ModelConfig, length: int) -> Shape:
        return (config.retrieval_dim,)

    def head_flops(self, config: ModelConfig, num_texts: int) -> int:
        return 2 * num_texts * config.emb_dim * config.retrieval_dim

    def score(self, config: ModelConfig, queries: PyTree, passages: PyTree,
              relative_bias: Optional[RelativeBias] = None, query_length: Optional[int] = None,
              chunk_size: Optional[int] = None) -> Array:
        p = passages["vectors"]
        return scoring.dot_scores(queries["vectors"], p.reshape(-1, p.shape[-1]))

    def own_scores(self, config: ModelConfig, queries: PyTree, passages: PyTree,
                   relative_bias: Optional[RelativeBias] = None, chunk_size: Optional[int] = None) -> Array:
        return scoring.own_passage_scores(queries["vectors"], passages["vectors"])

    def param_shapes(self, config: ModelConfig) -> dict[str, Shape]:
        query, passage, norm = self.param_paths
        return {query: (config.emb_dim, config.retrieval_dim), passage: (config.emb_dim, config.retrieval_dim),
                norm: (config.retrieval_dim,)}

    def hf_tensor_rules(self, config: ModelConfig) -> tuple[HfTensorRule, ...]:
        block = config.retriever_layer_index
        if block >= config.num_encoder_layers:
            raise UserError(f"retriever_layer={block} = num_encoder_layers: the HF layout stores the pooled "
                            "retriever inside encoder block B, which does not exist")
        return tuple((hf.format(B=block), ours, transpose) for hf, ours, transpose in self._HF_RULES)

    def write_hf_config(self, config: ModelConfig, hf: MutableMapping[str, Any]) -> None:
        hf["architectures"] = [CLASS_ARCHITECTURE]
        hf["retriever_layer"] = config.retriever_layer_index

    def index_dim(self, config: ModelConfig) -> int:
        return config.retrieval_dim

    def index_rows(self, side: Mapping[str, Array], dtype: Any) -> dict[str, Array]:
        return {"vectors": side["vectors"].astype(dtype)}

    def queries_from_index_rows(self, rows: Mapping[str, np.ndarray]) -> PyTree:
        return rows["vectors"].astype(np.float32)


class TokenRetriever(RetrieverKind):
    """ReAtt: one head's per-token Q / K at layer B ([len, head_dim] per text), ColBERT max-sim scores."""

    name = "token"
    index_arrays = {"tokens": 3, "lengths": 1}
    hf_config_keys = ("retrieval_layer", "retrieval_head")

    def validate(self, config: ModelConfig) -> None:
        if not 0 <= config.retrieval_head < config.num_heads:
            raise ValueError(f"retrieval_head={config.retrieval_head} outside [0, {config.num_heads})")

    def layer_readout(self, config: ModelConfig, attention: nn.Module, normed: Array) -> dict[str, Array]:
        query, key = attention(normed, normed, None, deterministic=True, qk_only=True)
        return {"token_query": query[..., config.retrieval_head, :], "token_key": key[..., config.retrieval_head, :]}

    def vectors(self, config: ModelConfig, head: Optional[nn.Module], readout: Mapping[str, Array],
                is_query: bool) -> dict[str, Array]:
        return {"tokens": readout["token_query" if is_query else "token_key"], "valid": readout["valid"]}

    def vector_shape(self, config: ModelConfig, length: int) -> Shape:
        return (length, config.head_dim)

    def position_bias(self, config: ModelConfig, relative_bias: Optional[RelativeBias], query_len: int,
                      passage_len: int, offset: int) -> Optional[Array]:
        if not config.token_score_position_bias:
            return None
        if relative_bias is None:
            raise ValueError("token_score_position_bias needs the encoder's relative position bias")
        return relative_bias(np.arange(query_len), offset + np.arange(passage_len))[config.retrieval_head]

    def score(self, config: ModelConfig, queries: PyTree, passages: PyTree,
              relative_bias: Optional[RelativeBias] = None, query_length: Optional[int] = None,
              chunk_size: Optional[int] = None) -> Array:
        p_tokens, p_valid = passages["tokens"], passages["valid"]
        p_tokens = p_tokens.reshape((-1,) + p_tokens.shape[-2:])
        p_valid = p_valid.reshape((-1, p_valid.shape[-1]))
        q_len = queries["tokens"].shape[1]
        bias = self.position_bias(config, relative_bias, q_len, p_tokens.shape[1],
                                  q_len if query_length is None else query_length)
        return scoring.maxsim_scores(queries["tokens"], queries["valid"], p_tokens, p_valid, bias,
                                     config.token_score_length_norm, chunk_size)

    def write_hf_config(self, config: ModelConfig, hf: MutableMapping[str, Any]) -> None:
        hf.pop("n_passages", None)
        if CLASS_ARCHITECTURE in (hf.get("architectures") or []):
            hf["architectures"] = ["T5ForConditionalGeneration"]
        hf.setdefault("architectures", ["MT5ForConditionalGeneration" if hf.get("model_type") == "mt5"
                                        else "T5ForConditionalGeneration"])
        hf["retrieval_layer"] = config.retriever_layer_index
        hf["retrieval_head"] = config.retrieval_head

    def hf_config_fields(self, hf: Mapping[str, Any]) -> dict[str, Any]:
        """ModelConfig fields of a ReAtt config.json (which has `retrieval_layer` and `retrieval_head`)."""
        return dict(retrieval_mode=self.name, retriever_layer=int(hf["retrieval_layer"]),
                    retrieval_head=int(hf["retrieval_head"]))

    def index_dim(self, config: ModelConfig) -> int:
        return config.head_dim

    def index_rows(self, side: Mapping[str, Array], dtype: Any) -> dict[str, Array]:
        valid = side["valid"]
        token_vectors = jnp.where(valid[..., None], side["tokens"], 0).astype(dtype)
        return {"tokens": token_vectors, "lengths": jnp.sum(valid, axis=-1, dtype=jnp.int32)}

    def queries_from_index_rows(self, rows: Mapping[str, np.ndarray]) -> PyTree:
        tokens = rows["tokens"]
        valid = np.arange(tokens.shape[1])[None, :] < rows["lengths"][:, None]
        return {"tokens": tokens.astype(np.float32), "valid": valid}

    def index_scorer(self, config: ModelConfig, position_bias: Optional[Array]) -> Optional[BlockScorer]:
        return maxsim_block_scorer(position_bias, config.token_score_length_norm)


def maxsim_block_scorer(position_bias: Optional[np.ndarray] = None, length_norm: bool = False) -> BlockScorer:
    """Token-mode index search: ReAtt max-sim Σ_i max_j q_i·k_j (optionally + position bias, / query length)."""

    def score(queries: dict[str, Array], rows: dict[str, Array]) -> Array:
        length = rows["tokens"].shape[1]
        valid = jnp.arange(length)[None, :] < rows["lengths"][:, None]
        return scoring.maxsim_scores(queries["tokens"], queries["valid"], rows["tokens"], valid,
                                     None if position_bias is None else jnp.asarray(position_bias), length_norm)

    return score


# ------------------------------------------------------------------------------------------------ registry
_REGISTRY: dict[str, RetrieverKind] = {}


def register(kind: RetrieverKind) -> RetrieverKind:
    """Adds a kind under its `name` (replacing one of that name) and returns it.

    Raises:
      ValueError: a kind without a name.
    """
    if not kind.name:
        raise ValueError(f"{kind!r} has no name")
    _REGISTRY[kind.name] = kind
    return kind


def unregister(name: str) -> None:
    """Removes a registered kind (tests register temporary ones)."""
    _REGISTRY.pop(name, None)


def known_kinds() -> tuple[str, ...]:
    """The names of the registered kinds, in registration order."""
    return tuple(_REGISTRY)


def kinds() -> tuple[RetrieverKind, ...]:
    """The registered kinds, in registration order."""
    return tuple(_REGISTRY.values())


def retriever_for(mode: str) -> RetrieverKind:
    """The kind named `mode`.

    Raises:
      ValueError: no kind of that name (the message lists the known ones).
    """
    kind = _REGISTRY.get(mode)
    if kind is None:
        known = ", ".join(repr(name) for name in _REGISTRY)
        raise ValueError(f"retrieval_mode={mode!r}: expected one of {known}")
    return kind


def get_retriever(config: ModelConfig) -> RetrieverKind:
    """The kind of `config.retrieval_mode` (see `retriever_for`)."""
    return retriever_for(config.retrieval_mode)


def all_hf_config_keys() -> tuple[str, ...]:
    """Every registered kind's HF config keys (a config written for one kind drops the others')."""
    return tuple(key for kind in _REGISTRY.values() for key in kind.hf_config_keys)


POOLED = register(PooledRetriever())
TOKEN = register(TokenRetriever())
