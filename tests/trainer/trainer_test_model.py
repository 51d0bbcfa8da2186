"""A tiny encoder-decoder LM implementing BaseModel, for trainer tests (the real CLASS model is tested separately).

Encoder: masked mean of token embeddings through a gated MLP. Decoder: one causal self-attention layer with a
T5-style relative position bias, conditioned on the encoder summary, then an RMSNorm and an untied logits layer.
Every parameter is logically annotated so all sharding rules (embed, mlp, heads, kv, vocab, relpos_buckets) bite.
Batches use seqio's EncDecFeatureConverter features. Also provides deterministic synthetic data.
"""

import dataclasses
import functools
from typing import Any, Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from class_jax.models.base import BaseModel

PyTree = Any


@dataclasses.dataclass(frozen=True)
class TinyConfig:
    vocab_size: int = 32
    emb_dim: int = 16
    num_heads: int = 4
    head_dim: int = 4
    mlp_dim: int = 32
    relpos_buckets: int = 8
    dropout_rate: float = 0.0
    z_loss: float = 1e-3
    dtype: str = "float32"
    remat_policy: str = "none"
    max_decode_length: int = 6


def _param(module: nn.Module, name: str, shape: tuple[int, ...], axes: tuple[str, ...], scale: float = 1.0):
    init = nn.with_logical_partitioning(nn.initializers.variance_scaling(scale, "fan_in", "normal"), axes)
    return module.param(name, init, shape, jnp.float32)


class TinyNetwork(nn.Module):
    config: TinyConfig

    def setup(self):
        c = self.config
        self.embedding = _param(self, "token_embedder", (c.vocab_size, c.emb_dim), ("vocab", "embed"))
        self.wi = _param(self, "encoder_wi", (c.emb_dim, 2, c.mlp_dim), ("embed", None, "mlp"))
        self.wo = _param(self, "encoder_wo", (c.mlp_dim, c.emb_dim), ("mlp", "embed"))
        self.qkv = _param(self, "qkv", (3, c.emb_dim, c.num_heads, c.head_dim), (None, "embed", "heads", "kv"))
        self.out = _param(self, "attention_out", (c.num_heads, c.head_dim, c.emb_dim), ("heads", "kv", "embed"))
        self.relpos = _param(self, "relpos_bias", (c.relpos_buckets, c.num_heads), ("relpos_buckets", "heads"))
        self.norm_scale = self.param("decoder_norm_scale", nn.with_logical_partitioning(nn.initializers.ones,
                                                                                        ("embed",)),
                                     (c.emb_dim,), jnp.float32)
        self.logits_kernel = _param(self, "logits_dense", (c.emb_dim, c.vocab_size), ("embed", "vocab"))

    def _dropout(self, x: jax.Array, rng: jax.Array | None, salt: int) -> jax.Array:
        if rng is None or self.config.dropout_rate == 0.0:
            return x
        keep = jax.random.bernoulli(jax.random.fold_in(rng, salt), 1.0 - self.config.dropout_rate, x.shape)
        return jnp.where(keep, x / (1.0 - self.config.dropout_rate), 0.0).astype(x.dtype)

    def __call__(self, encoder_tokens: jax.Array, decoder_tokens: jax.Array,
                 dropout_rng: jax.Array | None = None) -> jax.Array:
        c = self.config
        dtype = jnp.dtype(c.dtype)
        emb = self.embedding.astype(dtype)
        enc = jnp.take(emb, encoder_tokens, axis=0)
        enc = nn.with_logical_constraint(enc, ("batch", "length", "embed"))
        mask = (encoder_tokens > 0).astype(dtype)[..., None]
        summary = (enc * mask).sum(1) / jnp.maximum(mask.sum(1), 1.0)
        hidden = jnp.einsum("be,egm->bgm", summary, self.wi.astype(dtype))
        hidden = nn.gelu(hidden[:, 0]) * hidden[:, 1]
        hidden = self._dropout(hidden, dropout_rng, 0)
        context = summary + hidden @ self.wo.astype(dtype)

        block = functools.partial(_decoder_block, c, dtype)
        if c.remat_policy == "full":
            block = jax.checkpoint(block, static_argnums=())
        elif c.remat_policy == "minimal":
            block = jax.checkpoint(block, policy=jax.checkpoint_policies.dots_with_no_batch_dims_saveable)
        x = jnp.take(emb, decoder_tokens, axis=0) + context[:, None, :]
        x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
        x = x + block(x, self.qkv.astype(dtype), self.out.astype(dtype), self.relpos.astype(dtype))
        x = self._dropout(x, dropout_rng, 1)
        x = x * jax.lax.rsqrt(jnp.mean(jnp.square(x.astype(jnp.float32)), -1, keepdims=True) + 1e-6).astype(dtype)
        x = x * self.norm_scale.astype(dtype)
        logits = x @ self.logits_kernel.astype(dtype)
        return nn.with_logical_constraint(logits.astype(jnp.float32), ("batch", "length", "vocab"))


def _decoder_block(c: TinyConfig, dtype: Any, x: jax.Array, qkv: jax.Array, out: jax.Array,
                   relpos: jax.Array) -> jax.Array:
    q, k, v = (jnp.einsum("ble,ehd->blhd", x, qkv[i]) for i in range(3))
    length = x.shape[1]
    distance = jnp.arange(length)[:, None] - jnp.arange(length)[None, :]
    buckets = jnp.clip(distance, 0, c.relpos_buckets - 1)
    bias = jnp.transpose(relpos[buckets], (2, 0, 1))  # [heads, q, k]
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) + bias[None]
    scores = jnp.where(distance[None, None] >= 0, scores, jnp.finfo(dtype).min)
    probs = jax.nn.softmax(scores.astype(jnp.float32), axis=-1).astype(dtype)
    attended = jnp.einsum("bhqk,bkhd->bqhd", probs, v)
    return jnp.einsum("bqhd,hde->bqe", attended, out)


class TinyEncDecModel(BaseModel):
    """BaseModel over TinyNetwork with seqio EncDec features."""

    def __init__(self, config: TinyConfig = TinyConfig()):
        self.config = config
        self.network = TinyNetwork(config)

    @property
    def FEATURE_CONVERTER_CLS(self):  # pylint: disable=invalid-name
        import seqio  # pylint: disable=import-outside-toplevel
        return seqio.EncDecFeatureConverter

    def get_initial_variables(self, rng, input_shapes, input_types=None):
        encoder = jnp.ones(input_shapes["encoder_input_tokens"], jnp.int32)
        decoder = jnp.ones(input_shapes["decoder_input_tokens"], jnp.int32)
        return self.network.init(rng, encoder, decoder)

    def _logits(self, params, batch, dropout_rng=None):
        return self.network.apply({"params": params}, batch["encoder_input_tokens"], batch["decoder_input_tokens"],
                                  dropout_rng)

    def loss_fn(self, params, batch, dropout_rng):
        logits = self._logits(params, batch, dropout_rng)
        targets = batch["decoder_target_tokens"]
        weights = batch["decoder_loss_weights"].astype(jnp.float32)
        log_z = jax.nn.logsumexp(logits, axis=-1)
        target_logit = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
        num_tokens = jnp.maximum(weights.sum(), 1.0)
        ce = ((log_z - target_logit) * weights).sum() / num_tokens
        z_term = self.config.z_loss * (jnp.square(log_z) * weights).sum() / num_tokens
        accuracy = ((jnp.argmax(logits, -1) == targets) * weights).sum() / num_tokens
        loss = ce + z_term
        return loss, {"loss/ce": ce, "loss/z": z_term, "accuracy": accuracy, "num_tokens": weights.sum()}

    def predict_batch(self, params, batch, rng=None):
        del rng
        batch_size = batch["encoder_input_tokens"].shape[0]
        length = self.config.max_decode_length
        decoded = jnp.zeros((batch_size, length + 1), jnp.int32)

        def body(t, decoded):
            logits = self._logits(params, {"encoder_input_tokens": batch["encoder_input_tokens"],
                                           "decoder_input_tokens": decoded[:, :-1]})
            next_token = jnp.argmax(logits[:, t], -1).astype(jnp.int32)
            return decoded.at[:, t + 1].set(next_token)

        decoded = jax.lax.fori_loop(0, length, body, decoded)
        return decoded[:, 1:]

    def score_batch(self, params, batch):
        logits = self._logits(params, batch)
        log_probs = jax.nn.log_softmax(logits, -1)
        token_scores = jnp.take_along_axis(log_probs, batch["decoder_target_tokens"][..., None], -1)[..., 0]
        return (token_scores * batch["decoder_loss_weights"]).sum(-1)

    def flops_per_step(self, input_shapes):
        c = self.config
        batch, dec_len = input_shapes["decoder_input_tokens"]
        matmul_params = 3 * c.emb_dim * c.num_heads * c.head_dim * 2 + c.emb_dim * c.vocab_size
        attention = 2 * dec_len * c.num_heads * c.head_dim
        encoder = 3 * c.emb_dim * c.mlp_dim
        return 6.0 * batch * (dec_len * (matmul_params + attention) + encoder)


def pause(ctx, seconds: float = 0.4) -> None:
    """A hook that slows training down, so tests can interrupt a subprocess between given steps."""
    del ctx
    import time  # pylint: disable=import-outside-toplevel
    time.sleep(seconds)


# ----------------------------------------------------------------------------- synthetic data
def synthetic_global_batch(index: int, global_batch_size: int, encoder_length: int = 8, decoder_length: int = 6,
                           vocab_size: int = 32, seed: int = 0) -> dict[str, np.ndarray]:
    """Batch number `index` of a deterministic "copy the first tokens, shifted by one" task with ragged targets."""
    rng = np.random.default_rng([seed, index])
    inputs = rng.integers(2, vocab_size, size=(global_batch_size, encoder_length), dtype=np.int32)
    input_lengths = rng.integers(3, encoder_length + 1, size=global_batch_size)
    inputs[np.arange(encoder_length)[None, :] >= input_lengths[:, None]] = 0
    target_lengths = rng.integers(2, decoder_length + 1, size=global_batch_size)
    targets = np.where(inputs[:, :decoder_length] > 0, (inputs[:, :decoder_length] % (vocab_size - 2)) + 2, 0)
    targets[np.arange(decoder_length)[None, :] >= target_lengths[:, None]] = 0
    weights = (targets > 0).astype(np.int32)
    decoder_inputs = np.concatenate([np.zeros((global_batch_size, 1), np.int32), targets[:, :-1]], axis=1)
    return {"encoder_input_tokens": inputs, "decoder_input_tokens": decoder_inputs.astype(np.int32),
            "decoder_target_tokens": targets.astype(np.int32), "decoder_loss_weights": weights}


def synthetic_host_iterator(shard, seed: int = 0, **kwargs) -> Iterator[dict[str, np.ndarray]]:
    """This host's rows of the synthetic global batches 0, 1, 2, ... (same global data for any process count)."""
    index = 0
    while True:
        batch = synthetic_global_batch(index, shard.global_batch_size, seed=seed, **kwargs)
        rows = slice(shard.index * shard.local_batch_size, (shard.index + 1) * shard.local_batch_size)
        yield {name: value[rows] for name, value in batch.items()}
        index += 1


def terminating_host_iterator(shard, **kwargs) -> Iterator[dict[str, np.ndarray]]:
    """`synthetic_host_iterator` that first sends SIGTERM to its own process: a stop request during start-up (the
    trainer reads the first batch while it builds the data, before restoring and compiling)."""
    import os  # pylint: disable=import-outside-toplevel
    import signal  # pylint: disable=import-outside-toplevel
    os.kill(os.getpid(), signal.SIGTERM)
    yield from synthetic_host_iterator(shard, **kwargs)
