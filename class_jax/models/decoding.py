"""Greedy and beam decoding over a step function with a cache (the encoder output is computed once, outside).

A step function maps (cache, tokens [n, 1]) to (logits [n, vocab], new cache). Caches are pytrees whose arrays
have the decoded sequences as leading dimension, except scalars (positions), which are shared.
"""

from typing import Callable

import jax
import jax.numpy as jnp

Array = jax.Array
PyTree = object
StepFn = Callable[[PyTree, Array], tuple[Array, PyTree]]
_NEG_INF = -1e9


def greedy_decode(step_fn: StepFn, cache: PyTree, batch_size: int, max_length: int, eos_id: int = 1,
                  start_id: int = 0) -> Array:
    """Argmax decoding until every sequence has produced EOS or `max_length` tokens.

    Returns:
      [batch, max_length] int32 tokens; positions after EOS are 0.
    """

    def cond(state):
        step, _, done, _, _ = state
        return jnp.logical_and(step < max_length, jnp.logical_not(jnp.all(done)))

    def body(state):
        step, last, done, tokens, cache = state
        logits, cache = step_fn(cache, last[:, None])
        next_token = jnp.argmax(logits, axis=-1).astype(jnp.int32)
        next_token = jnp.where(done, 0, next_token)
        tokens = tokens.at[:, step].set(next_token)
        return step + 1, next_token, jnp.logical_or(done, next_token == eos_id), tokens, cache

    init = (jnp.array(0), jnp.full((batch_size,), start_id, jnp.int32), jnp.zeros((batch_size,), bool),
            jnp.zeros((batch_size, max_length), jnp.int32), cache)
    return jax.lax.while_loop(cond, body, init)[3]


def _gather_beams(tree: PyTree, flat_indices: Array) -> PyTree:
    """Reorders the leading (batch * beams) dimension of every non-scalar array."""
    return jax.tree_util.tree_map(lambda x: x if x.ndim == 0 else jnp.take(x, flat_indices, axis=0), tree)


def beam_search(step_fn: StepFn, cache: PyTree, batch_size: int, num_beams: int, max_length: int,
                eos_id: int = 1, start_id: int = 0, length_penalty: float = 0.6) -> tuple[Array, Array]:
    """Beam search; the cache must already be expanded to batch * num_beams rows (beam-major within a batch).

    Finished beams are frozen (they only extend with pads at no cost); the final choice ranks beams by
    log-probability / ((5 + length) / 6) ** length_penalty (GNMT).

    Returns:
      (tokens [batch, num_beams, max_length] best first, scores [batch, num_beams]).
    """
    n = batch_size * num_beams

    def cond(state):
        step, _, _, done, _, _ = state
        return jnp.logical_and(step < max_length, jnp.logical_not(jnp.all(done)))

    def body(state):
        step, last, log_probs, done, tokens, cache = state
        logits, cache = step_fn(cache, last.reshape(n, 1))
        token_lp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1).reshape(batch_size, num_beams, -1)
        vocab = token_lp.shape[-1]
        frozen = jnp.full((vocab,), _NEG_INF).at[0].set(0.0)
        token_lp = jnp.where(done[..., None], frozen, token_lp)
        candidates = (log_probs[..., None] + token_lp).reshape(batch_size, num_beams * vocab)
        best, flat = jax.lax.top_k(candidates, num_beams)
        beam, token = flat // vocab, (flat % vocab).astype(jnp.int32)
        flat_rows = (jnp.arange(batch_size)[:, None] * num_beams + beam).reshape(-1)
        tokens = jnp.take_along_axis(tokens, beam[..., None], axis=1).at[:, :, step].set(token)
        was_done = jnp.take_along_axis(done, beam, axis=1)
        done = jnp.logical_or(was_done, token == eos_id)
        return step + 1, token, best, done, tokens, _gather_beams(cache, flat_rows)

    # Only beam 0 is live at the start, so the first step does not pick the same token num_beams times.
    init_lp = jnp.tile(jnp.array([0.0] + [_NEG_INF] * (num_beams - 1)), (batch_size, 1))
    init = (jnp.array(0), jnp.full((batch_size, num_beams), start_id, jnp.int32), init_lp,
            jnp.zeros((batch_size, num_beams), bool), jnp.zeros((batch_size, num_beams, max_length), jnp.int32),
            cache)
    _, _, log_probs, _, tokens, _ = jax.lax.while_loop(cond, body, init)
    lengths = jnp.sum(tokens != 0, axis=-1).astype(jnp.float32) + 1.0
    normalised = log_probs / ((5.0 + lengths) / 6.0) ** length_penalty
    order = jnp.argsort(-normalised, axis=-1)
    return (jnp.take_along_axis(tokens, order[..., None], axis=1), jnp.take_along_axis(normalised, order, axis=1))
