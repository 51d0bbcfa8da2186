"""mT5 / T5.1.1 building blocks with logical axis names on every parameter.

Parameter names and shapes follow T5X's `t5x/examples/t5/network.py` so T5X checkpoints map one to one: kernels
are [in, out] (`nn.Dense` without bias), norms have a `scale`, the relative position bias is `rel_embedding`
[heads, buckets]. T5 does not scale attention logits by 1/sqrt(head_dim) (the scale lives in the query init).
"""

import functools
from typing import Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from class_jax.models.config import ModelConfig
from class_jax.models.dense_grads import dense_dot_general

Array = jax.Array
NEG_INF = -1e10  # added to masked logits; finite so fully-masked rows stay NaN-free.

# Logical axis names (T5X's canonical ones).
BATCH, LENGTH, EMBED, MLP, HEADS, KV, JOINED_KV, VOCAB, RELPOS = (
    "batch", "length", "embed", "mlp", "heads", "kv", "joined_kv", "vocab", "relpos_buckets")


def compute_dtype(config: ModelConfig) -> jnp.dtype:
    """The activation dtype of a config (parameters stay float32)."""
    return jnp.bfloat16 if config.dtype == "bfloat16" else jnp.float32


def _activation(name: str) -> Callable[[Array], Array]:
    if name == "linear":
        return lambda x: x
    if name == "gelu":  # T5.1.1 / mT5 "gated-gelu" is the tanh approximation (HF NewGELU).
        return functools.partial(jax.nn.gelu, approximate=True)
    if name == "gelu_exact":
        return functools.partial(jax.nn.gelu, approximate=False)
    if name in ("relu", "silu"):
        return getattr(jax.nn, name)
    raise ValueError(f"unsupported MLP activation {name!r}")


class RMSNorm(nn.Module):
    """T5's layer norm: scale only, no mean subtraction, statistics in float32."""

    epsilon: float = 1e-6
    dtype: jnp.dtype = jnp.float32
    axis_name: str = EMBED

    @nn.compact
    def __call__(self, x: Array) -> Array:
        x = x.astype(jnp.float32)
        variance = jnp.mean(jnp.square(x), axis=-1, keepdims=True)
        x = x * jax.lax.rsqrt(variance + self.epsilon)
        scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, (self.axis_name,)),
                           (x.shape[-1],), jnp.float32)
        return (x * scale).astype(self.dtype)


def dense(features: int, axes: tuple[str, str], init: Callable, dtype: jnp.dtype, name: str) -> nn.Dense:
    """A bias-free Dense with a float32 `kernel` [in, out] named by logical `axes` (T5X's layout).

    Its backward pass is the CPU-friendly one of `dense_grads` when compiling for CPU.
    """
    return nn.Dense(features, use_bias=False, dtype=dtype, param_dtype=jnp.float32,
                    kernel_init=nn.with_logical_partitioning(init, axes), name=name,
                    dot_general=dense_dot_general)


def relative_position_bucket(relative_position: np.ndarray, bidirectional: bool, num_buckets: int,
                             max_distance: int) -> np.ndarray:
    """T5's bucketing of (key position - query position), computed exactly as Hugging Face does (float32 logs).

    Args:
      relative_position: integer array of key minus query positions.
      bidirectional: encoder (True) or causal decoder (False).
      num_buckets: total buckets.
      max_distance: distances at or beyond this share the last bucket.

    Returns:
      int32 bucket ids of the same shape.
    """
    buckets = np.zeros_like(relative_position, dtype=np.int32)
    if bidirectional:
        num_buckets //= 2
        buckets += (relative_position > 0).astype(np.int32) * num_buckets
        distance = np.abs(relative_position)
    else:
        distance = -np.minimum(relative_position, 0)
    max_exact = num_buckets // 2
    is_small = distance < max_exact
    with np.errstate(divide="ignore"):
        large = max_exact + (
            np.log(np.maximum(distance, 1).astype(np.float32) / np.float32(max_exact))
            / np.float32(np.log(np.float32(max_distance) / np.float32(max_exact)))
            * np.float32(num_buckets - max_exact)).astype(np.int32)
    large = np.minimum(large, num_buckets - 1)
    return buckets + np.where(is_small, distance, large).astype(np.int32)


class RelativePositionBias(nn.Module):
    """The per-stack relative position bias table, `rel_embedding` [heads, buckets]."""

    config: ModelConfig
    bidirectional: bool

    @nn.compact
    def __call__(self, query_positions: np.ndarray | Array, key_positions: np.ndarray) -> Array:
        """Returns the bias [heads, q, k] (float32) for the given absolute positions.

        Args:
          query_positions: [q] positions of the queries; may be traced (decoding), then the bucket table is built
            for all positions up to `key_positions` and indexed.
          key_positions: [k] static positions of the keys.
        """
        cfg = self.config
        table = self.param(
            "rel_embedding",
            nn.with_logical_partitioning(nn.initializers.variance_scaling(1.0, "fan_avg", "uniform"),
                                         (HEADS, RELPOS)),
            (cfg.num_heads, cfg.relative_attention_num_buckets), jnp.float32)
        key_positions = np.asarray(key_positions)
        if isinstance(query_positions, np.ndarray):
            buckets = relative_position_bucket(key_positions[None, :] - query_positions[:, None],
                                               self.bidirectional, cfg.relative_attention_num_buckets,
                                               cfg.relative_attention_max_distance)
            buckets = jnp.asarray(buckets)
        else:
            all_queries = np.arange(int(key_positions.max()) + 1)
            full = relative_position_bucket(key_positions[None, :] - all_queries[:, None], self.bidirectional,
                                            cfg.relative_attention_num_buckets,
                                            cfg.relative_attention_max_distance)
            buckets = jnp.asarray(full)[query_positions]
        return jnp.take(table, buckets, axis=1)


class MultiHeadAttention(nn.Module):
    """T5 attention (no logit scaling), optional decoding cache, optional return of the probabilities.

    In decoding mode (`decode=True`) self-attention keeps `cached_key`/`cached_value` [batch, max_len, joined_kv]
    and a `cache_index`; cross-attention (`cache_kv_once=True`) projects the encoder output once, on the call that
    creates the cache, and reuses it at every step.
    """

    config: ModelConfig
    dropout_rate: float = 0.0

    def _split_heads(self, x: Array) -> Array:
        return x.reshape(x.shape[:-1] + (self.config.num_heads, self.config.head_dim))

    @nn.compact
    def __call__(self, inputs_q: Array, inputs_kv: Array, bias: Optional[Array], *, deterministic: bool,
                 decode: bool = False, cache_kv_once: bool = False, return_probs: bool = False,
                 qk_only: bool = False) -> tuple[Array, Optional[Array]]:
        """Attends `inputs_q` [batch, q, emb] over `inputs_kv` [batch, k, emb].

        Args:
          inputs_q: query-side activations.
          inputs_kv: key/value-side activations (ignored after the cache exists when cache_kv_once).
          bias: additive logits bias broadcastable to [batch, heads, q, k] (position bias and masks); during
            self-attention decoding it must cover the whole cache length.
          deterministic: disables dropout.
          decode: use/update the decoding cache.
          cache_kv_once: (with decode) project inputs_kv only when the cache is created (cross-attention).
          return_probs: also return the attention probabilities before dropout, [batch, heads, q, k] float32.
          qk_only: return (query, key) projections of `inputs_q`, split into heads, and nothing else (token-mode
            retrieval reads them).

        Returns:
          (output [batch, q, emb], probabilities or None), or (query, key) when qk_only.
        """
        cfg = self.config
        dtype = compute_dtype(cfg)
        inner = cfg.num_heads * cfg.head_dim
        # T5X's query init folds the missing 1/sqrt(head_dim) logit scale into the weights.
        query_init = nn.initializers.variance_scaling(cfg.head_dim ** -0.5, "fan_in", "normal")
        kv_init = nn.initializers.variance_scaling(1.0, "fan_in", "normal")
        query_proj = dense(inner, (EMBED, JOINED_KV), query_init, dtype, "query")
        key_proj = dense(inner, (EMBED, JOINED_KV), kv_init, dtype, "key")
        value_proj = dense(inner, (EMBED, JOINED_KV), kv_init, dtype, "value")
        out_proj = dense(cfg.emb_dim, (JOINED_KV, EMBED), kv_init, dtype, "out")
        query = self._split_heads(query_proj(inputs_q))
        if qk_only:
            return query, self._split_heads(key_proj(inputs_q))
        if decode and cache_kv_once:
            key_var = self.variable("cache", "cached_key", lambda: key_proj(inputs_kv))
            value_var = self.variable("cache", "cached_value", lambda: value_proj(inputs_kv))
            key, value = self._split_heads(key_var.value), self._split_heads(value_var.value)
        elif decode:
            initialised = self.has_variable("cache", "cached_key")
            key_new, value_new = key_proj(inputs_kv), value_proj(inputs_kv)
            key_var = self.variable("cache", "cached_key", jnp.zeros, key_new.shape, key_new.dtype)
            value_var = self.variable("cache", "cached_value", jnp.zeros, value_new.shape, value_new.dtype)
            index_var = self.variable("cache", "cache_index", lambda: jnp.array(0, jnp.int32))
            if initialised:
                # One new position per call: write it at cache_index.
                index = index_var.value
                key_var.value = jax.lax.dynamic_update_slice(key_var.value, key_new, (0, index, 0))
                value_var.value = jax.lax.dynamic_update_slice(value_var.value, value_new, (0, index, 0))
                index_var.value = index + inputs_q.shape[1]
            key, value = self._split_heads(key_var.value), self._split_heads(value_var.value)
        else:
            key = self._split_heads(key_proj(inputs_kv))
            value = self._split_heads(value_proj(inputs_kv))
        query = nn.with_logical_constraint(query, (BATCH, LENGTH, HEADS, KV))
        key = nn.with_logical_constraint(key, (BATCH, LENGTH, HEADS, KV))
        value = nn.with_logical_constraint(value, (BATCH, LENGTH, HEADS, KV))

        dropout_active = not deterministic and self.dropout_rate > 0
        # Decoding steps (one query against the cache) gain nothing from a fused kernel: they keep the einsum path.
        if cfg.attention_kernel != "einsum" and not (return_probs or dropout_active or decode):
            context = fused_attention(query, key, value, bias, cfg.attention_kernel)
            return out_proj(context.reshape(context.shape[:2] + (inner,))), None

        logits = jnp.einsum("bqhd,bkhd->bhqk", query, key, preferred_element_type=jnp.float32)
        if bias is not None:
            logits = logits + bias
        probs = jax.nn.softmax(logits, axis=-1)
        kept_probs = probs
        if dropout_active:
            keep = jax.random.bernoulli(self.make_rng("dropout"), 1.0 - self.dropout_rate, probs.shape)
            probs = jnp.where(keep, probs / (1.0 - self.dropout_rate), 0.0)
            if cfg.retrieval_target_dropout:
                kept_probs = probs
        context = jnp.einsum("bhqk,bkhd->bqhd", probs.astype(value.dtype), value)
        context = context.reshape(context.shape[:2] + (inner,))
        return out_proj(context), (kept_probs if return_probs else None)


def fused_attention(query: Array, key: Array, value: Array, bias: Optional[Array], implementation: str) -> Array:
    """T5 attention (no logit scaling) as one `jax.nn.dot_product_attention` call.

    Args:
      query: [batch, q, heads, head_dim].
      key: [batch, k, heads, head_dim].
      value: [batch, k, heads, head_dim].
      bias: additive logits bias broadcastable to [batch, heads, q, k], or None.
      implementation: "xla" (the same products and float32 softmax as the einsum path) or "cudnn" (the fused
        kernel; the bias is added in the activations' dtype, which cuDNN requires). Off NVIDIA GPUs "cudnn" runs as
        "xla": a checkpoint trained with it must still serve on a CPU or TPU host.

    Returns:
      The attention context [batch, q, heads, head_dim].
    """
    if implementation == "cudnn" and jax.default_backend() != "gpu":
        implementation = "xla"
    if bias is not None:
        bias = jnp.broadcast_to(bias, bias.shape[:-2] + (query.shape[1], key.shape[1]))
        if implementation == "cudnn":
            bias = bias.astype(query.dtype)
    return jax.nn.dot_product_attention(query, key, value, bias=bias, scale=1.0, implementation=implementation)


class MlpBlock(nn.Module):
    """The (gated) feed-forward block: act_0(x W_0) * act_1(x W_1) ... then W_o."""

    config: ModelConfig

    @nn.compact
    def __call__(self, x: Array, *, deterministic: bool) -> Array:
        cfg = self.config
        dtype = compute_dtype(cfg)
        init = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")
        names = ["wi"] if len(cfg.mlp_activations) == 1 else [f"wi_{i}" for i in range(len(cfg.mlp_activations))]
        hidden = None
        for name, activation in zip(names, cfg.mlp_activations):
            branch = _activation(activation)(dense(cfg.mlp_dim, (EMBED, MLP), init, dtype, name)(x))
            hidden = branch if hidden is None else hidden * branch
        hidden = nn.with_logical_constraint(hidden, (BATCH, LENGTH, MLP))
        hidden = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))(hidden, deterministic=deterministic)
        return dense(cfg.emb_dim, (MLP, EMBED), init, dtype, "wo")(hidden)


def mask_bias(allowed: np.ndarray | Array) -> Array:
    """Additive attention bias from a boolean mask: 0 where allowed, NEG_INF elsewhere (float32)."""
    return jnp.where(allowed, 0.0, NEG_INF).astype(jnp.float32)


def key_padding_bias(key_valid: Array) -> Array:
    """Additive mask [batch, 1, 1, k] hiding padded keys.

    Padded query rows still attend to the real keys (as Hugging Face T5 does); their outputs are never read.
    """
    return mask_bias(key_valid[:, None, None, :])


def causal_bias(length: int) -> Array:
    """Additive causal mask [1, 1, length, length]."""
    return mask_bias(np.tril(np.ones((length, length), dtype=bool)))[None, None]
