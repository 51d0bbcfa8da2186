"""An independent numpy CLASS reader over truly packed (query ++ passage) pairs, for the pair-layout tests.

Nothing here uses class_jax: RMSNorm, the T5 relative position buckets, gated-GELU and attention are written out
from the T5 / mT5 definitions. Each pair holds only real tokens (no slot, no pads): the query's n tokens, then the
passage's m tokens at positions n .. n + m - 1. Layers [0, B) run the query and the passage as separate sequences
(block-diagonal attention), layers [B, L) run the packed pair with full attention, and the decoder cross-attends
over the concatenation of a question's non-empty pairs (FiD).

Parameters are read by their class_jax names ('/'-joined, as `params_io` and the HF import write them) or from
a nested Flax tree.
"""

import math
from typing import Any, Mapping, Sequence

import numpy as np


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
    """A nested parameter tree as '/'-joined names -> float64 arrays."""
    flat = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "/"))
        else:
            flat[name] = np.asarray(value, dtype=np.float64)
    return flat


def bucket(relative: int, bidirectional: bool, num_buckets: int, max_distance: int) -> int:
    """T5's relative position bucket of one key-minus-query distance (Mesh TensorFlow / HF definition)."""
    result = 0
    if bidirectional:
        num_buckets //= 2
        result += num_buckets if relative > 0 else 0
        distance = abs(relative)
    else:
        distance = max(-relative, 0)
    max_exact = num_buckets // 2
    if distance < max_exact:
        return result + distance
    # float32 as HF computes it, so the rare distance on a bucket edge lands where the checkpoint's training put it.
    large = max_exact + int(np.float32(np.log(np.float32(distance) / np.float32(max_exact)))
                            / np.float32(np.log(np.float32(max_distance) / np.float32(max_exact)))
                            * np.float32(num_buckets - max_exact))
    return result + min(large, num_buckets - 1)


def rms_norm(x: np.ndarray, scale: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * scale


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class NumpyCLASS:
    """The reader of a gated-GELU mT5 CLASS model, float64, from its parameters."""

    def __init__(self, params: Mapping[str, Any], *, num_heads: int, num_encoder_layers: int,
                 num_decoder_layers: int, retriever_layer: int, num_buckets: int, max_distance: int,
                 eps: float = 1e-6):
        self.p = params if all(not isinstance(v, Mapping) for v in params.values()) else flatten(params)
        self.p = {name: np.asarray(value, np.float64) for name, value in self.p.items()}
        self.heads, self.enc_layers, self.dec_layers = num_heads, num_encoder_layers, num_decoder_layers
        self.boundary, self.num_buckets, self.max_distance, self.eps = retriever_layer, num_buckets, max_distance, eps

    def _position_bias(self, table: np.ndarray, length_q: int, length_k: int, bidirectional: bool) -> np.ndarray:
        out = np.empty((self.heads, length_q, length_k))
        for i in range(length_q):
            for j in range(length_k):
                out[:, i, j] = table[:, bucket(j - i, bidirectional, self.num_buckets, self.max_distance)]
        return out

    def _attention(self, prefix: str, x: np.ndarray, kv: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
        p = self.p

        def heads(y: np.ndarray) -> np.ndarray:
            return y.reshape(y.shape[0], self.heads, -1).transpose(1, 0, 2)

        q, k, v = (heads(inp @ p[f"{prefix}/{name}/kernel"]) for name, inp in (("query", x), ("key", kv),
                                                                               ("value", kv)))
        logits = q @ k.transpose(0, 2, 1)  # T5: no 1/sqrt(d) scaling
        if bias is not None:
            logits = logits + bias
        context = softmax(logits) @ v  # [heads, q, d]
        return context.transpose(1, 0, 2).reshape(x.shape[0], -1) @ p[f"{prefix}/out/kernel"]

    def _mlp(self, prefix: str, x: np.ndarray) -> np.ndarray:
        p = self.p
        hidden = gelu_tanh(x @ p[f"{prefix}/wi_0/kernel"]) * (x @ p[f"{prefix}/wi_1/kernel"])
        return hidden @ p[f"{prefix}/wo/kernel"]

    def _encoder_layers(self, x: np.ndarray, start: int, stop: int) -> np.ndarray:
        bias = self._position_bias(self.p["encoder/relpos_bias/rel_embedding"], len(x), len(x), True)
        for index in range(start, stop):
            prefix = f"encoder/layers_{index}"
            y = rms_norm(x, self.p[f"{prefix}/pre_attention_layer_norm/scale"], self.eps)
            x = x + self._attention(f"{prefix}/attention", y, y, bias)
            y = rms_norm(x, self.p[f"{prefix}/pre_mlp_layer_norm/scale"], self.eps)
            x = x + self._mlp(f"{prefix}/mlp", y)
        return x

    def encode_pair(self, query: Sequence[int], passage: Sequence[int]) -> np.ndarray:
        """The encoder output [n + m, d] of one packed pair of real tokens."""
        embed = self.p["token_embedder/embedding"]
        q = self._encoder_layers(embed[np.asarray(query)], 0, self.boundary)
        s = self._encoder_layers(embed[np.asarray(passage)], 0, self.boundary)
        x = self._encoder_layers(np.concatenate([q, s]), self.boundary, self.enc_layers)
        return rms_norm(x, self.p["encoder/encoder_norm/scale"], self.eps)

    def logits(self, query: Sequence[int], passages: Sequence[Sequence[int]],
               decoder_input: Sequence[int]) -> np.ndarray:
        """Decoder logits [len, vocab] of one question over its (non-empty) passages, teacher-forced."""
        encoded = np.concatenate([self.encode_pair(query, passage) for passage in passages])
        p = self.p
        x = p["token_embedder/embedding"][np.asarray(decoder_input)]
        length = len(decoder_input)
        causal = np.where(np.tril(np.ones((length, length), bool)), 0.0, -1e10)
        self_bias = self._position_bias(p["decoder/relpos_bias/rel_embedding"], length, length, False) + causal
        for index in range(self.dec_layers):
            prefix = f"decoder/layers_{index}"
            y = rms_norm(x, p[f"{prefix}/pre_self_attention_layer_norm/scale"], self.eps)
            x = x + self._attention(f"{prefix}/self_attention", y, y, self_bias)
            y = rms_norm(x, p[f"{prefix}/pre_cross_attention_layer_norm/scale"], self.eps)
            x = x + self._attention(f"{prefix}/encoder_decoder_attention", y, encoded, None)
            y = rms_norm(x, p[f"{prefix}/pre_mlp_layer_norm/scale"], self.eps)
            x = x + self._mlp(f"{prefix}/mlp", y)
        x = rms_norm(x, p["decoder/decoder_norm/scale"], self.eps)
        return x @ p["decoder/logits_dense/kernel"]
