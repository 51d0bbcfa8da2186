"""The CLASS encoder-decoder: mT5 with a retriever split at encoder layer B and a Fusion-in-Decoder reader.

Layout of one (query, passage) pair: the query in a fixed slot of Lq tokens, then the passage in Lp tokens (pads
inside each slot are masked). Encoder layers [0, B) see the query and the passage as separate sequences (the
block-diagonal attention of the paper), so the query is encoded once per question, not once per passage, and a
passage encoded alone for the index gets exactly the vector it gets inside a pair. Layers [B, L) see the whole
pair. The reader's decoder cross-attends over all k pairs of a question (k * (Lq + Lp) positions).

`ModelConfig.pair_layout` "packed" keeps these tensors but gives layers [B, L) the relative positions of the
released code's packed pair (the passage right after the query's last real token, pads after the passage): passage
token j sits at position n + j, n the query's real length, instead of Lq + j. Pads are masked keys in both layouts
and cross-attention has no position bias, so this is the packed layout's computation.
"""

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from class_jax.models import layers
from class_jax.models import retrievers
from class_jax.models.config import ModelConfig
from class_jax.models.layers import BATCH, EMBED, LENGTH, VOCAB

Array = jax.Array

_REMAT_POLICIES = {
    "full": None,  # save nothing: recompute the whole layer in the backward pass
    "minimal": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def _maybe_remat(layer_cls: type[nn.Module], config: ModelConfig, static_argnums: tuple[int, ...]):
    if config.remat_policy == "none":
        return layer_cls
    return nn.remat(layer_cls, policy=_REMAT_POLICIES[config.remat_policy], static_argnums=static_argnums,
                    prevent_cse=True)


def _token_embedder(config: ModelConfig) -> nn.Embed:
    return nn.Embed(config.vocab_size, config.emb_dim, dtype=layers.compute_dtype(config),
                    param_dtype=jnp.float32,
                    embedding_init=nn.with_logical_partitioning(nn.initializers.normal(1.0), (VOCAB, EMBED)))


class EncoderLayer(nn.Module):
    """Pre-norm self-attention + MLP. Optionally exposes what retrieval reads at this layer."""

    config: ModelConfig

    @nn.compact
    def __call__(self, x: Array, bias: Array, deterministic: bool, retrieval_only: bool = False,
                 read_retrieval: bool = False) -> tuple[Array, Optional[dict[str, Array]]]:
        """Runs the layer.

        Args:
          x: [batch, length, emb] input.
          bias: additive attention bias [batch or 1, heads, length, length].
          deterministic: no dropout.
          retrieval_only: stop after computing the retrieval read-outs (index encoding skips the rest).
          read_retrieval: return {"normed": pre-attention RMSNorm output, plus what the retriever kind reads
            (`RetrieverKind.layer_readout`; token mode: "token_query" / "token_key", the retrieval head's Q and K
            [batch, length, head_dim])}.

        Returns:
          (output, retrieval read-outs or None).
        """
        cfg = self.config
        normed = layers.RMSNorm(cfg.layer_norm_epsilon, layers.compute_dtype(cfg),
                                name="pre_attention_layer_norm")(x)
        attention = layers.MultiHeadAttention(cfg, cfg.attention_probs_dropout_rate, name="attention")
        readout = None
        if read_retrieval or retrieval_only:
            readout = {"normed": normed}
            readout.update(retrievers.get_retriever(cfg).layer_readout(cfg, attention, normed))
        if retrieval_only:
            return x, readout
        y, _ = attention(normed, normed, bias, deterministic=deterministic)
        x = x + nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))(y, deterministic=deterministic)
        y = layers.RMSNorm(cfg.layer_norm_epsilon, layers.compute_dtype(cfg), name="pre_mlp_layer_norm")(x)
        y = layers.MlpBlock(cfg, name="mlp")(y, deterministic=deterministic)
        x = x + nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))(y, deterministic=deterministic)
        return nn.with_logical_constraint(x, (BATCH, LENGTH, EMBED)), readout


class Encoder(nn.Module):
    """The mT5 encoder stack with the CLASS retriever split."""

    config: ModelConfig
    token_embedder: nn.Embed

    def setup(self):
        cfg = self.config
        self.relpos_bias = layers.RelativePositionBias(cfg, bidirectional=True)
        layer_cls = _maybe_remat(EncoderLayer, cfg, static_argnums=(3, 4, 5))
        self.layers = [layer_cls(cfg) for _ in range(cfg.num_encoder_layers)]
        self.encoder_norm = layers.RMSNorm(cfg.layer_norm_epsilon, layers.compute_dtype(cfg))
        self.dropout = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))
        self.retriever = retrievers.get_retriever(cfg).make_head(cfg)  # None for kinds without parameters

    def _bias(self, valid: Array) -> Array:
        length = valid.shape[-1]
        positions = np.arange(length)
        return self.relpos_bias(positions, positions)[None] + layers.key_padding_bias(valid)

    def _packed_pair_bias(self, query_valid: Array, pair_valid: Array, num_passages: int,
                          passage_len: int) -> Array:
        """The attention bias of layers [B, L) for pairs held in the slot layout but positioned as packed.

        Query token i keeps position i and passage token j gets n + j, where n is its query's number of real
        tokens (real tokens come first in the slot). Query pads keep i: they are masked keys and their outputs are
        never read. The bias is built once per question and shared by its k pairs.

        Args:
          query_valid: [batch, Lq] bool.
          pair_valid: [batch * k, Lq + Lp] bool, the keys' validity.
          num_passages: k.
          passage_len: Lp.

        Returns:
          [batch * k, heads, Lq + Lp, Lq + Lp] float32.
        """
        batch, query_len = query_valid.shape
        length = query_len + passage_len
        query_real = jnp.sum(query_valid, axis=-1, dtype=jnp.int32)
        positions = jnp.concatenate(
            [jnp.broadcast_to(jnp.arange(query_len, dtype=jnp.int32), (batch, query_len)),
             query_real[:, None] + jnp.arange(passage_len, dtype=jnp.int32)[None]], axis=1)
        # The bias of every relative position in (-length, length), through the same table and bucket function
        # as the static layout (key position minus a query at 0), then gathered per question.
        relative = np.arange(-(length - 1), length)
        by_relative = self.relpos_bias(np.zeros(1, np.int64), relative)[:, 0]  # [heads, 2 * length - 1]
        offsets = positions[:, None, :] - positions[:, :, None] + (length - 1)  # [batch, length, length]
        bias = jnp.moveaxis(jnp.take(by_relative, offsets, axis=1), 0, 1)  # [batch, heads, length, length]
        bias = jnp.broadcast_to(bias[:, None], (batch, num_passages) + bias.shape[1:])
        bias = bias.reshape((batch * num_passages,) + bias.shape[2:])
        return bias + layers.key_padding_bias(pair_valid)

    def _embed(self, tokens: Array, deterministic: bool) -> Array:
        x = self.token_embedder(tokens)
        return self.dropout(nn.with_logical_constraint(x, (BATCH, LENGTH, EMBED)), deterministic=deterministic)

    def _run(self, x: Array, valid: Array, start: int, stop: int, deterministic: bool,
             read_at: Optional[int] = None, bias: Optional[Array] = None) -> tuple[Array, Optional[dict[str, Array]]]:
        bias = self._bias(valid) if bias is None else bias
        readout = None
        for index in range(start, stop):
            x, read = self.layers[index](x, bias, deterministic, False, index == read_at)
            readout = read if read is not None else readout
        return x, readout

    def _finish(self, x: Array, deterministic: bool) -> Array:
        return self.dropout(self.encoder_norm(x), deterministic=deterministic)

    def __call__(self, tokens: Array, deterministic: bool = True) -> Array:
        """A plain T5 encoder over [batch, length] tokens (0 = pad): full attention in every layer."""
        valid = tokens > 0
        x, _ = self._run(self._embed(tokens, deterministic), valid, 0, self.config.num_encoder_layers,
                         deterministic)
        return self._finish(x, deterministic)

    def retrieval_readout(self, tokens: Array, deterministic: bool = True) -> dict[str, Array]:
        """Layers [0, B) over a standalone query or passage, then what layer B's input gives retrieval.

        Args:
          tokens: [batch, length] token ids of queries only or passages only (0 = pad).
          deterministic: no dropout.

        Returns:
          {"normed": [batch, length, emb], "valid": [batch, length] bool, and the kind's `layer_readout`
          entries (token mode: "token_query"/"token_key": [batch, length, head_dim])}.
        """
        cfg = self.config
        valid = tokens > 0
        x, _ = self._run(self._embed(tokens, deterministic), valid, 0, cfg.retriever_layer_index, deterministic)
        _, readout = self.layers[cfg.retriever_layer_index](x, self._bias(valid), deterministic, True, True)
        return dict(readout, valid=valid)

    def retrieval_vectors(self, readout: dict[str, Array], is_query: bool) -> dict[str, Array]:
        """A side's retrieval representation (`RetrieverKind.vectors`) from a retrieval read-out.

        Returns:
          pooled mode: {"vectors": [batch, retrieval_dim]}; token mode: {"tokens": [batch, len, head_dim],
          "valid": [batch, len]}.
        """
        return retrievers.get_retriever(self.config).vectors(self.config, self.retriever, readout, is_query)

    def encode_pairs(self, query_tokens: Array, passage_tokens: Array,
                     deterministic: bool = True) -> dict[str, Array]:
        """Encodes each query with each of its k passages.

        Args:
          query_tokens: [batch, Lq] query ids (no EOS), 0 = pad.
          passage_tokens: [batch, k, Lp] passage ids (EOS-terminated), 0 = pad; an all-pad row is an empty slot.
          deterministic: no dropout.

        Returns:
          {"encoded": [batch, k * (Lq + Lp), emb], "encoded_valid": [batch, k * (Lq + Lp)],
           "query_readout" / "passage_readout": retrieval read-outs (passage ones with leading dims [batch, k])}.
        """
        cfg = self.config
        batch, k, passage_len = passage_tokens.shape
        query_len = query_tokens.shape[1]
        boundary = cfg.retriever_layer_index
        flat_passages = passage_tokens.reshape(batch * k, passage_len)
        query_valid, passage_valid = query_tokens > 0, flat_passages > 0
        # Block-diagonal layers: queries and passages as separate sequences.
        q, _ = self._run(self._embed(query_tokens, deterministic), query_valid, 0, boundary, deterministic)
        p, _ = self._run(self._embed(flat_passages, deterministic), passage_valid, 0, boundary, deterministic)
        # Joint layers over the (query, passage) pairs; layer B's read-out gives the retrieval inputs.
        q = jnp.broadcast_to(q[:, None], (batch, k) + q.shape[1:]).reshape(batch * k, query_len, -1)
        x = jnp.concatenate([q, p], axis=1)
        # An empty passage slot is masked whole (its query copy too), so the reader never attends to it.
        slot_present = jnp.any(passage_valid, axis=-1, keepdims=True)
        pair_valid = jnp.concatenate(
            [jnp.broadcast_to(query_valid[:, None], (batch, k, query_len)).reshape(batch * k, query_len)
             & slot_present, passage_valid], axis=1)
        # Layer B's read-out is its normalised input, before any attention: the layout cannot change it.
        bias = (self._packed_pair_bias(query_valid, pair_valid, k, passage_len) if cfg.pair_layout == "packed"
                else None)
        x, readout = self._run(x, pair_valid, boundary, cfg.num_encoder_layers, deterministic, read_at=boundary,
                               bias=bias)
        encoded = self._finish(x, deterministic)

        def split(value: Array, lo: int, hi: int) -> Array:
            return value[:, lo:hi].reshape((batch, k, hi - lo) + value.shape[2:])

        query_readout = {name: split(v, 0, query_len)[:, 0] for name, v in readout.items()}
        passage_readout = {name: split(v, query_len, query_len + passage_len) for name, v in readout.items()}
        query_readout["valid"], passage_readout["valid"] = query_valid, passage_valid.reshape(batch, k, -1)
        pair_len = query_len + passage_len
        return {
            "encoded": encoded.reshape(batch, k * pair_len, -1),
            "encoded_valid": pair_valid.reshape(batch, k * pair_len),
            "query_readout": query_readout,
            "passage_readout": passage_readout,
        }


class DecoderLayer(nn.Module):
    """Pre-norm causal self-attention, cross-attention over the encoded pairs, MLP."""

    config: ModelConfig

    @nn.compact
    def __call__(self, x: Array, encoded: Array, self_bias: Array, cross_bias: Array, deterministic: bool,
                 decode: bool = False, return_cross_probs: bool = False) -> tuple[Array, Optional[Array]]:
        cfg = self.config
        dtype = layers.compute_dtype(cfg)
        dropout = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))
        y = layers.RMSNorm(cfg.layer_norm_epsilon, dtype, name="pre_self_attention_layer_norm")(x)
        y, _ = layers.MultiHeadAttention(cfg, cfg.attention_probs_dropout_rate, name="self_attention")(
            y, y, self_bias, deterministic=deterministic, decode=decode)
        x = x + dropout(y, deterministic=deterministic)
        y = layers.RMSNorm(cfg.layer_norm_epsilon, dtype, name="pre_cross_attention_layer_norm")(x)
        cross_attention = layers.MultiHeadAttention(cfg, cfg.attention_probs_dropout_rate,
                                                    name="encoder_decoder_attention")
        y, probs = cross_attention(
            y, encoded, cross_bias, deterministic=deterministic, decode=decode, cache_kv_once=True,
            return_probs=return_cross_probs)
        x = x + dropout(y, deterministic=deterministic)
        y = layers.RMSNorm(cfg.layer_norm_epsilon, dtype, name="pre_mlp_layer_norm")(x)
        y = layers.MlpBlock(cfg, name="mlp")(y, deterministic=deterministic)
        x = x + dropout(y, deterministic=deterministic)
        return nn.with_logical_constraint(x, (BATCH, LENGTH, EMBED)), probs


class Decoder(nn.Module):
    """The mT5 decoder; in decoding mode it keeps a cache and its own position counter."""

    config: ModelConfig
    token_embedder: nn.Embed

    @nn.compact
    def __call__(self, encoded: Array, encoded_valid: Array, decoder_input_tokens: Array,
                 deterministic: bool = True, decode: bool = False,
                 return_cross_probs: bool = False) -> tuple[Array, Optional[Array]]:
        """Returns logits [batch, len, vocab] (float32) and the last layer's cross-attention probabilities.

        Args:
          encoded: [batch, enc_len, emb] encoder output.
          encoded_valid: [batch, enc_len] bool, False at pads.
          decoder_input_tokens: [batch, len] (targets shifted right, starting with 0). In decoding mode the first
            call (which creates the cache) passes [batch, max_len] and later calls [batch, 1].
          deterministic: no dropout.
          decode: use the autoregressive cache.
          return_cross_probs: also return the last layer's cross-attention probabilities [batch, heads, len,
            enc_len] (pre-dropout unless config.retrieval_target_dropout).
        """
        cfg = self.config
        relpos = layers.RelativePositionBias(cfg, bidirectional=False, name="relpos_bias")
        length = decoder_input_tokens.shape[1]
        stepping = decode and self.has_variable("cache", "position")
        position = self.variable("cache", "position", lambda: jnp.array(0, jnp.int32)) if decode else None
        if stepping:
            # The cache length is static: read it off the shape of the first layer's self-attention key cache.
            keys = np.arange(self.variables["cache"]["layers_0"]["self_attention"]["cached_key"].shape[1])
            query_positions = position.value + jnp.arange(length)
            allowed = keys[None, :] <= query_positions[:, None]
            self_bias = relpos(query_positions, keys)[None] + layers.mask_bias(allowed)[None, None]
            position.value = position.value + length
        else:
            positions = np.arange(length)
            self_bias = relpos(positions, positions)[None] + layers.causal_bias(length)
        cross_bias = layers.key_padding_bias(encoded_valid)

        x = self.token_embedder(decoder_input_tokens)
        x = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))(x, deterministic=deterministic)
        layer_cls = _maybe_remat(DecoderLayer, cfg, static_argnums=(5, 6, 7))
        probs = None
        for index in range(cfg.num_decoder_layers):
            last = index == cfg.num_decoder_layers - 1
            x, layer_probs = layer_cls(cfg, name=f"layers_{index}")(
                x, encoded, self_bias, cross_bias, deterministic, decode, return_cross_probs and last)
            probs = layer_probs if last else probs
        x = layers.RMSNorm(cfg.layer_norm_epsilon, layers.compute_dtype(cfg), name="decoder_norm")(x)
        x = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))(x, deterministic=deterministic)
        if cfg.logits_via_embedding:
            logits = self.token_embedder.attend(x * cfg.emb_dim ** -0.5)
        else:
            logits = layers.dense(cfg.vocab_size, (EMBED, VOCAB),
                                   nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal"),
                                   layers.compute_dtype(cfg), "logits_dense")(x)
        logits = nn.with_logical_constraint(logits.astype(jnp.float32), (BATCH, LENGTH, VOCAB))
        return logits, probs


class Transformer(nn.Module):
    """The whole CLASS network; its apply methods are the entry points used by model, index and tests."""

    config: ModelConfig

    def setup(self):
        self.config.validate()
        self.token_embedder = _token_embedder(self.config)
        self.encoder = Encoder(self.config, self.token_embedder)
        self.decoder = Decoder(self.config, self.token_embedder)

    def encode(self, tokens: Array, deterministic: bool = True) -> Array:
        """Plain T5 encoding of [batch, length] tokens (full attention everywhere; HF-equivalent)."""
        return self.encoder(tokens, deterministic)

    def decode(self, encoded: Array, encoded_valid: Array, decoder_input_tokens: Array,
               deterministic: bool = True, decode: bool = False,
               return_cross_probs: bool = False) -> tuple[Array, Optional[Array]]:
        """Decoder logits (and last-layer cross-attention probabilities); see `Decoder.__call__`."""
        return self.decoder(encoded, encoded_valid, decoder_input_tokens, deterministic, decode,
                            return_cross_probs)

    def encode_pairs(self, query_tokens: Array, passage_tokens: Array,
                     deterministic: bool = True) -> dict[str, Array]:
        """See `Encoder.encode_pairs`."""
        return self.encoder.encode_pairs(query_tokens, passage_tokens, deterministic)

    def retrieval_readout(self, tokens: Array, deterministic: bool = True) -> dict[str, Array]:
        """See `Encoder.retrieval_readout`."""
        return self.encoder.retrieval_readout(tokens, deterministic)

    def retrieval_vectors(self, readout: dict[str, Array], is_query: bool) -> dict[str, Array]:
        """See `Encoder.retrieval_vectors`."""
        return self.encoder.retrieval_vectors(readout, is_query)

    def relative_bias(self, query_positions: np.ndarray, key_positions: np.ndarray) -> Array:
        """The encoder's relative position bias [heads, q, k] (token-mode scoring uses one head of it)."""
        return self.encoder.relpos_bias(query_positions, key_positions)

    def __call__(self, query_tokens: Array, passage_tokens: Array, decoder_input_tokens: Array,
                 deterministic: bool = True) -> dict[str, Array]:
        """The FiD forward pass used for training: encoder over pairs, decoder over all of them.

        Returns:
          encode_pairs' outputs plus "logits" [batch, La, vocab] and "cross_probs" [batch, heads, La, enc_len].
        """
        out = self.encode_pairs(query_tokens, passage_tokens, deterministic)
        logits, probs = self.decode(out["encoded"], out["encoded_valid"], decoder_input_tokens, deterministic,
                                    return_cross_probs=True)
        if self.is_initializing():  # the retriever head (if its kind has one) is not used above
            self.retrieval_vectors(out["query_readout"], True)
        return dict(out, logits=logits, cross_probs=probs)
