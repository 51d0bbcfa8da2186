"""Retrieval scores: pooled dot products (CLASS) and token max-sim (ReAtt)."""

from typing import Optional

import jax
import jax.numpy as jnp

Array = jax.Array
_NEG = -1e9


def dot_scores(query_vectors: Array, passage_vectors: Array) -> Array:
    """Plain dot products (no temperature): [queries, d] x [passages, d] -> [queries, passages], float32."""
    return jnp.einsum("qd,pd->qp", query_vectors.astype(jnp.float32), passage_vectors.astype(jnp.float32))


def own_passage_scores(query_vectors: Array, passage_vectors: Array) -> Array:
    """Each query against its own k passages: [batch, d] x [batch, k, d] -> [batch, k]."""
    return jnp.einsum("bd,bkd->bk", query_vectors.astype(jnp.float32), passage_vectors.astype(jnp.float32))


def maxsim_scores(query_tokens: Array, query_valid: Array, passage_tokens: Array, passage_valid: Array,
                  position_bias: Optional[Array] = None, length_norm: bool = False,
                  chunk_size: Optional[int] = None) -> Array:
    """ReAtt token-mode scores: Σ_i max_j (q_i · k_j [+ bias_ij]) over real tokens.

    Args:
      query_tokens: [queries, Lq, d] per-token query vectors (the retrieval head's Q).
      query_valid: [queries, Lq] bool.
      passage_tokens: [passages, Lp, d] per-token passage vectors (the retrieval head's K).
      passage_valid: [passages, Lp] bool.
      position_bias: optional [Lq, Lp] bias added to every q_i · k_j (ReAtt training adds the relative
        position bias of the retrieval layer and head).
      length_norm: divide by the number of real query tokens.
      chunk_size: score passages in chunks of this many (bounds memory at queries x chunk x Lq x Lp); None
        scores all at once.

    Returns:
      [queries, passages] float32 scores; a passage with no real token scores -1e9.
    """
    query_tokens = query_tokens.astype(jnp.float32)
    passage_tokens = passage_tokens.astype(jnp.float32)
    q_weight = query_valid.astype(jnp.float32)
    q_count = jnp.maximum(q_weight.sum(-1, keepdims=True), 1.0)

    def score_chunk(args: tuple[Array, Array]) -> Array:
        keys, valid = args
        sim = jnp.einsum("qid,pjd->qpij", query_tokens, keys)
        if position_bias is not None:
            sim = sim + position_bias[None, None]
        best = jnp.max(jnp.where(valid[None, :, None, :], sim, _NEG), axis=-1)
        total = jnp.sum(best * q_weight[:, None, :], axis=-1)
        total = total / q_count if length_norm else total
        return jnp.where(jnp.any(valid, -1)[None, :], total, _NEG)

    num_passages = passage_tokens.shape[0]
    if chunk_size is None or chunk_size >= num_passages:
        return score_chunk((passage_tokens, passage_valid))
    pad = (-num_passages) % chunk_size
    keys = jnp.pad(passage_tokens, ((0, pad), (0, 0), (0, 0)))
    valid = jnp.pad(passage_valid, ((0, pad), (0, 0)))
    chunks = (keys.reshape((-1, chunk_size) + keys.shape[1:]), valid.reshape((-1, chunk_size) + valid.shape[1:]))
    scores = jax.lax.map(score_chunk, chunks)  # [chunks, queries, chunk]
    return jnp.moveaxis(scores, 0, 1).reshape(query_tokens.shape[0], -1)[:, :num_passages]
