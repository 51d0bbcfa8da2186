"""Losses of CLASS: answer cross-entropy, retrieval distillation KLs, and the retrieval target.

All functions are pure jnp over float32 and take explicit masks: an entry of a score matrix that is masked out
(an empty passage slot) takes no probability mass on either side of a KL.
"""

import jax
import jax.numpy as jnp

Array = jax.Array
_MASKED = -1e9


def token_cross_entropy(logits: Array, targets: Array, label_smoothing: float = 0.0) -> Array:
    """Per-token cross-entropy [batch, len] (float32), with `label_smoothing` spread uniformly over the vocabulary."""
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    target_log_probs = jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
    if label_smoothing:
        return -(1.0 - label_smoothing) * target_log_probs - label_smoothing * jnp.mean(log_probs, -1)
    return -target_log_probs


def per_row_mean(values: Array, weights: Array) -> Array:
    """Weighted mean of each row of [batch, len] values: [batch] (0 for a row without weight)."""
    weights = weights.astype(jnp.float32)
    return jnp.sum(values * weights, axis=-1) / jnp.maximum(jnp.sum(weights, axis=-1), 1.0)


def cross_entropy(logits: Array, targets: Array, weights: Array,
                  label_smoothing: float = 0.0) -> tuple[Array, Array, Array]:
    """Token-level cross-entropy, the mean over all weighted tokens of the batch.

    Args:
      logits: [batch, len, vocab] float32.
      targets: [batch, len] int ids.
      weights: [batch, len] 0/1 loss weights (0 at pads).
      label_smoothing: mass spread uniformly over the vocabulary.

    Returns:
      (mean loss over weighted tokens, number of weighted tokens, number of correct argmax predictions).
    """
    token_loss = token_cross_entropy(logits, targets, label_smoothing)
    weights = weights.astype(jnp.float32)
    num_tokens = jnp.sum(weights)
    loss = jnp.sum(token_loss * weights) / jnp.maximum(num_tokens, 1.0)
    correct = jnp.sum((jnp.argmax(logits, -1) == targets) * weights)
    return loss, num_tokens, correct


def masked_log_softmax(scores: Array, mask: Array) -> Array:
    """log softmax over the last axis restricted to `mask` (masked entries get a very low log-probability)."""
    return jax.nn.log_softmax(jnp.where(mask, scores.astype(jnp.float32), _MASKED), axis=-1)


def kl_per_row(target_probs: Array, log_probs: Array, mask: Array) -> Array:
    """KL(target ‖ q) = Σ t (log t − log q) of each row, restricted to mask: [...] (0 for an empty row).

    Args:
      target_probs: [..., n] target distribution; treated as given (no gradient is stopped here: callers decide).
      log_probs: [..., n] log of the predicted distribution.
      mask: [..., n] bool.
    """
    target_probs = jnp.where(mask, target_probs, 0.0)
    return jnp.sum(jnp.where(mask, jax.scipy.special.xlogy(target_probs, target_probs) - target_probs * log_probs,
                             0.0), axis=-1)


def kl_divergence(target_probs: Array, log_probs: Array, mask: Array) -> Array:
    """Mean over non-empty rows of `kl_per_row` (torch's `kl_div(log_probs, target, 'batchmean')` when none is empty).

    Args:
      target_probs: [..., n] target distribution (rows sum to 1 over the mask).
      log_probs: [..., n] log of the predicted distribution.
      mask: [..., n] bool.

    Returns:
      Scalar mean KL over non-empty rows.
    """
    rows = jnp.any(mask, axis=-1).astype(jnp.float32)
    return jnp.sum(kl_per_row(target_probs, log_probs, mask) * rows) / jnp.maximum(jnp.sum(rows), 1.0)


def reader_passage_distribution(cross_probs: Array, encoded_valid: Array, num_passages: int) -> Array:
    """The reader's distribution over its k passages (differentiable).

    Cross-attention probabilities of the last decoder layer at the first decoder position, summed over each
    (query, passage) pair's tokens, averaged over heads.

    Args:
      cross_probs: [batch, heads, dec_len, k * pair_len] attention probabilities (pads already ~0).
      encoded_valid: [batch, k * pair_len] bool.
      num_passages: k.

    Returns:
      [batch, k] distribution over the k passages (rows sum to 1 up to masking).
    """
    first = cross_probs[:, :, 0, :] * encoded_valid[:, None, :]
    batch, heads, enc_len = first.shape
    per_passage = first.reshape(batch, heads, num_passages, enc_len // num_passages).sum(-1)
    return per_passage.mean(axis=1)


def retrieval_target(cross_probs: Array, encoded_valid: Array, num_passages: int) -> Array:
    """The retriever's target from stage 2 on: `reader_passage_distribution` with gradients stopped."""
    return jax.lax.stop_gradient(reader_passage_distribution(cross_probs, encoded_valid, num_passages))


def reader_retriever_kl(target: Array, scores: Array, mask: Array) -> Array:
    """KL(target ‖ softmax(scores)) over each query's own k passages (stages 2 and fine-tuning)."""
    return kl_divergence(target, masked_log_softmax(scores, mask), mask)


def copies_of_own_passages(passage_tokens: Array) -> Array:
    """Which passages of the batch are token-for-token copies of one of each query's own passages.

    Two queries often share passages (clozes from one article retrieve the same ones); a copy of a query's own
    passage in another query's slots must not count as its negative. Rows are compared by two independent
    32-bit polynomial hashes of their tokens ([B, k, B*k] comparisons instead of [B*k, B*k, L]).

    Args:
      passage_tokens: [B, k, L] int token ids (0-padded; an all-zero row is an empty slot).

    Returns:
      [B, B*k] bool: entry (i, j) is True when passage j equals one of query i's own passages (its own slots
      included; empty slots match nothing).
    """
    num_queries, k, length = passage_tokens.shape
    tokens = passage_tokens.reshape(num_queries * k, length).astype(jnp.uint32)
    positions = jnp.arange(1, length + 1, dtype=jnp.uint32)
    hashes = jnp.stack([jnp.sum(tokens * (positions * jnp.uint32(multiplier) + jnp.uint32(1)), axis=-1)
                        for multiplier in (0x9E3779B1, 0x85EBCA77)], axis=-1)  # uint32 arithmetic wraps
    present = jnp.any(tokens > 0, axis=-1)
    own = hashes.reshape(num_queries, k, 1, 2)
    same = jnp.all(own == hashes[None, None, :, :], axis=-1)  # [B, k, B*k]
    same = same & present.reshape(num_queries, k, 1) & present[None, None, :]
    return jnp.any(same, axis=1)


def clr_pt_retrieval_losses(teacher_scores: Array, student_en: Array, student_xx: Array, mask: Array,
                            teacher_temperature: float = 1.0, teacher_mask: Array | None = None
                            ) -> dict[str, Array]:
    """The stage-1 retrieval terms over the global batch (docs/method.md#stage-1-clr-pt).

    Each matrix is [queries, candidate passages] — every query against every query's passages.

    Args:
      teacher_scores: frozen teacher scores T (divided by `teacher_temperature` before the softmax).
      student_en: student scores for the English queries, S_en.
      student_xx: student scores for the target-language queries, S_xx.
      mask: bool, which (query, passage) entries take part in the students' distributions (False for empty
        slots, and for entries left out of the comparison).
      teacher_temperature: softmax temperature of the teacher.
      teacher_mask: bool, the entries the teacher's distribution spans (default `mask`); entries in `mask` but
        not here get zero teacher probability, i.e. they are the teacher's negatives.

    Returns:
      {"kl_teacher_en": KL(T ‖ S_en), "kl_teacher_xx": KL(T ‖ S_xx),
       "kl_en_xx": KL(stopgrad(S_en) ‖ S_xx)}.
    """
    teacher_mask = mask if teacher_mask is None else teacher_mask & mask
    mask = mask & jnp.any(teacher_mask, axis=-1, keepdims=True)  # a query the teacher scored nothing for sits out
    teacher = jnp.exp(masked_log_softmax(teacher_scores / teacher_temperature, teacher_mask))
    log_en = masked_log_softmax(student_en, mask)
    log_xx = masked_log_softmax(student_xx, mask)
    return {
        "kl_teacher_en": kl_divergence(teacher, log_en, mask),
        "kl_teacher_xx": kl_divergence(teacher, log_xx, mask),
        "kl_en_xx": kl_divergence(jax.lax.stop_gradient(jnp.exp(log_en)), log_xx, mask),
    }


def token_distribution_kl_per_token(target_logits: Array, logits: Array) -> Array:
    """KL(softmax(stopgrad(target_logits)) ‖ softmax(logits)) at every position: [..., len] (answer alignment)."""
    target = jax.nn.softmax(jax.lax.stop_gradient(target_logits.astype(jnp.float32)), axis=-1)
    log_q = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return jnp.sum(jax.scipy.special.xlogy(target, target) - target * log_q, axis=-1)
