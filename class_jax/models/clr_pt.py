"""Stage 1 (CLR-PT) as the authors' release trains it (docs/method.md#stage-1-clr-pt).

The release (`ReaderDistillTrainer.compute_loss`) runs the student on a doubled batch: every query's English cloze
and its target-language cloze, each with the query's k passages and answer ("chunks"). From it:

  retrieval   alpha * [KL(softmax T ‖ S_en) + KL(softmax T ‖ S_xx) + KL(softmax sg(S_en) ‖ S_xx)], each KL the
              mean over the global batch's queries of KL(target row ‖ log_softmax(student row)); T, S_en, S_xx are
              [B, B*k]: every query against every passage of the global batch, S_en with the passage vectors of
              the English rows, S_xx with those of the target-language rows.
  answer CE   per chunk, the mean over the chunk's answer tokens; summed over the 2B chunks and divided by 2B.
  decoder KL  per chunk, KL(teacher's decoder passage distribution ‖ the student's), the student's taken as the log
              of its distribution (`losses.reader_passage_distribution`); a target-language chunk uses its English
              query's teacher row; summed and divided by 2B (weight 1 in the release).
  alignment   target-language chunks only: KL(softmax sg(English answer logits) ‖ log_softmax(target answer logits))
              per answer token, the mean over the chunk's answer tokens, summed and divided by B (weight 1).

The per-chunk terms are sums over chunks divided by global counts (`ChunkTotals`), so a microbatch's share adds up
to the whole; the retrieval term is a function of the retrieval vectors alone. That split is what the GradCache
step (class_jax/trainer/grad_cache.py) needs: `vectors` for every microbatch, `retrieval_loss` once over all of
them, then `reader_loss` per microbatch with the cached vector gradients.

Rows are doubled as [B, 2] (row (i, 0) is query i's English chunk, (i, 1) its target-language chunk) and flattened
to 2B, rather than the release's [English..., target...]: under batch sharding every device keeps its own queries'
chunks, and the terms do not depend on the order.
"""

import dataclasses
from typing import TYPE_CHECKING, Any, Mapping, Optional

import jax
import jax.numpy as jnp

from class_jax.models import losses

if TYPE_CHECKING:  # the model imports this module
    from class_jax.models.class_model import CLASSModel

Array = jax.Array
PyTree = Any
Vectors = dict[str, dict[str, Array]]  # "query_en" / "query_xx" / "passage_en" / "passage_xx" -> retriever vectors
_DOUBLED_FEATURES = ("passage_tokens", "decoder_input_tokens", "decoder_target_tokens", "decoder_loss_weights")


@dataclasses.dataclass(frozen=True)
class ChunkTotals:
    """Global counts the per-chunk terms are divided by (the whole batch's, whatever the microbatch).

    Attributes:
      queries: B, the number of query pairs (target-language chunks).
      answer_tokens: answer tokens over the 2B chunks (for the accuracy metric).
    """

    queries: Array
    answer_tokens: Array


jax.tree_util.register_dataclass(ChunkTotals, data_fields=["queries", "answer_tokens"], meta_fields=[])


def chunk_totals(batch: Mapping[str, Array]) -> ChunkTotals:
    """The global counts of a (global) stage-1 batch."""
    weights = batch["decoder_loss_weights"].astype(jnp.float32)
    return ChunkTotals(queries=jnp.float32(weights.shape[0]), answer_tokens=2.0 * jnp.sum(weights))


def doubled_batch(batch: Mapping[str, Array]) -> dict[str, Array]:
    """The student's 2B chunks: rows 2i and 2i+1 are query i's English and target-language cloze."""

    def interleave(first: Array, second: Array) -> Array:
        return jnp.stack([first, second], axis=1).reshape((-1,) + first.shape[1:])

    doubled = {name: interleave(batch[name], batch[name]) for name in _DOUBLED_FEATURES}
    doubled["query_tokens"] = interleave(batch["english_query_tokens"], batch["query_tokens"])
    return doubled


def _halves(tree: PyTree) -> tuple[PyTree, PyTree]:
    """[2B, ...] leaves -> (English rows [B, ...], target-language rows [B, ...])."""
    pairs = jax.tree_util.tree_map(lambda x: x.reshape((x.shape[0] // 2, 2) + x.shape[1:]), tree)
    return (jax.tree_util.tree_map(lambda x: x[:, 0], pairs), jax.tree_util.tree_map(lambda x: x[:, 1], pairs))


def vectors_from_readouts(model: "CLASSModel", params: PyTree, out: Mapping[str, Any]) -> Vectors:
    """The retrieval vectors of the doubled batch's queries and passages, split into the two halves."""
    query_en, query_xx = _halves(model._vectors(params, out["query_readout"], True))  # pylint: disable=protected-access
    passage_en, passage_xx = _halves(model._vectors(params, out["passage_readout"], False))  # pylint: disable=protected-access
    return {"query_en": query_en, "query_xx": query_xx, "passage_en": passage_en, "passage_xx": passage_xx}


def vectors(model: "CLASSModel", params: PyTree, batch: Mapping[str, Array], dropout_rng: Optional[Array]) -> Vectors:
    """The retrieval vectors of a (micro)batch from the encoder alone (GradCache's first pass).

    The encoder runs under the same dropout key as in `reader_loss`, so both passes draw the same masks (the
    release replays its random state with `RandContext` for the same reason).
    """
    doubled = doubled_batch(batch)
    out = model.module.apply({"params": params}, doubled["query_tokens"], doubled["passage_tokens"],
                             dropout_rng is None, method="encode_pairs",
                             rngs={"dropout": dropout_rng} if dropout_rng is not None else {})
    return vectors_from_readouts(model, params, out)


def _own_teacher_block(teacher: Array, num_queries: int, k: int) -> tuple[Array, Array]:
    """Own-passage teacher scores [B, k] placed on the block diagonal of [B, B*k], with the block's mask."""
    own_block = jnp.eye(num_queries, dtype=bool)[:, :, None]
    placed = jnp.where(own_block, teacher[:, None, :], 0.0).reshape(num_queries, num_queries * k)
    return placed, jnp.broadcast_to(own_block, (num_queries, num_queries, k)).reshape(num_queries, -1)


def retrieval_loss(model: "CLASSModel", params: PyTree, vecs: Vectors,
                   batch: Mapping[str, Array]) -> tuple[Array, dict[str, Array]]:
    """alpha * the three stage-1 retrieval KLs over the whole batch; `params` only for a token kind's position bias.

    `batch["teacher_scores"]` is T over the global batch [B, B*k] (a neural teacher, computed on the fly) or the
    teacher's scores of each query's own k passages [B, k] (BM25 from the FiD files): see
    `LossConfig.unscored_passages` for what the other queries' passages are then.
    """
    cfg = model.loss_config
    passage_present = jnp.any(batch["passage_tokens"] > 0, axis=-1)  # [B, k]
    num_queries, k = passage_present.shape
    query_length = batch["query_tokens"].shape[1]
    s_en = model.score(params, vecs["query_en"], vecs["passage_en"], query_length)
    s_xx = model.score(params, vecs["query_xx"], vecs["passage_xx"], query_length)
    mask = jnp.broadcast_to(passage_present.reshape(1, -1), s_xx.shape)
    teacher = batch["teacher_scores"].astype(jnp.float32)
    teacher_mask = mask
    if teacher.shape[1] != num_queries * k:  # own passages only (BM25 from the FiD files)
        if teacher.shape[1] != k:
            raise ValueError(f"teacher_scores of shape {teacher.shape}: expected [B, k] = [{num_queries}, {k}] or "
                             f"[B, B*k] = [{num_queries}, {num_queries * k}]")
        teacher, teacher_mask = _own_teacher_block(teacher, num_queries, k)
        if cfg.unscored_passages == "negatives":
            mask = mask & (teacher_mask | ~losses.copies_of_own_passages(batch["passage_tokens"]))
        elif cfg.unscored_passages == "ignore":
            mask = mask & teacher_mask
        else:
            raise ValueError(f"LossConfig.unscored_passages={cfg.unscored_passages!r}: expected 'negatives' or "
                             "'ignore'")
    terms = losses.clr_pt_retrieval_losses(teacher, s_en, s_xx, mask, cfg.teacher_temperature, teacher_mask)
    loss = jnp.float32(0.0)
    metrics = {}
    for name, enabled in (("kl_teacher_en", cfg.kl_teacher_en), ("kl_teacher_xx", cfg.kl_teacher_xx),
                          ("kl_en_xx", cfg.kl_en_xx)):
        metrics[f"loss/{name}"] = terms[name]
        if enabled:
            loss = loss + cfg.alpha * terms[name]
    return loss, metrics


def _teacher_reader_distribution(model: "CLASSModel", batch: Mapping[str, Array], passage_present: Array) -> Array:
    """The teacher's distribution over each query's own k passages: its decoder's, or (BM25) its retrieval's."""
    if "teacher_reader_distribution" in batch:
        return jnp.where(passage_present, batch["teacher_reader_distribution"].astype(jnp.float32), 0.0)
    own = batch["teacher_scores"].astype(jnp.float32)
    if own.shape[1] != passage_present.shape[1]:
        raise ValueError("the decoder KL needs teacher_reader_distribution (a neural teacher) or the teacher's "
                         f"own-passage scores [B, k]; got teacher_scores of shape {own.shape}")
    return jnp.exp(losses.masked_log_softmax(own / model.loss_config.teacher_temperature, passage_present))


def reader_terms(model: "CLASSModel", out: Mapping[str, Array], doubled: Mapping[str, Array],
                 batch: Mapping[str, Array], totals: ChunkTotals) -> tuple[Array, dict[str, Array]]:
    """The per-chunk terms of a (micro)batch, divided by the global counts in `totals`.

    Args:
      model: the student.
      out: the student's forward pass over `doubled`.
      doubled: `doubled_batch(batch)`.
      batch: the (micro)batch.
      totals: `chunk_totals` of the global batch.

    Returns:
      (weighted sum of the enabled terms, metrics: each term's share of its global value, "accuracy"'s share and
      "num_tokens", the microbatch's answer tokens). Every value adds up over microbatches.
    """
    cfg = model.loss_config
    passage_present = jnp.any(batch["passage_tokens"] > 0, axis=-1)
    weights = doubled["decoder_loss_weights"].astype(jnp.float32)
    token_ce = losses.token_cross_entropy(out["logits"], doubled["decoder_target_tokens"], cfg.label_smoothing)
    ce = jnp.sum(losses.per_row_mean(token_ce, weights)) / (2.0 * totals.queries)
    correct = jnp.sum((jnp.argmax(out["logits"], -1) == doubled["decoder_target_tokens"]) * weights)
    metrics = {"loss/ce": ce, "accuracy": correct / jnp.maximum(totals.answer_tokens, 1.0),
               "num_tokens": jnp.sum(weights)}
    loss = cfg.ce_weight * ce
    if cfg.decoder_teacher_kl:
        k = passage_present.shape[1]
        teacher = _teacher_reader_distribution(model, batch, passage_present)
        student = losses.reader_passage_distribution(out["cross_probs"], out["encoded_valid"], k)
        present = jnp.repeat(passage_present, 2, axis=0)
        per_chunk = losses.kl_per_row(jnp.repeat(teacher, 2, axis=0), jnp.log(jnp.maximum(student, 1e-30)), present)
        kl = jnp.sum(per_chunk) / (2.0 * totals.queries)
        metrics["loss/kl_decoder_teacher"] = kl
        loss = loss + cfg.decoder_teacher_weight * kl
    if cfg.answer_alignment_kl:
        english_logits, target_logits = _halves(out["logits"])
        _, target_weights = _halves(weights)
        per_token = losses.token_distribution_kl_per_token(english_logits, target_logits)
        kl = jnp.sum(losses.per_row_mean(per_token, target_weights)) / totals.queries
        metrics["loss/kl_answer_alignment"] = kl
        loss = loss + cfg.answer_alignment_weight * kl
    return loss, metrics


def reader_loss(model: "CLASSModel", params: PyTree, batch: Mapping[str, Array], dropout_rng: Optional[Array],
                totals: ChunkTotals) -> tuple[Array, dict[str, Array], Vectors]:
    """A (micro)batch's per-chunk terms, from one forward pass over its doubled rows, with its retrieval vectors."""
    doubled = doubled_batch(batch)
    out = model._forward(params, doubled["query_tokens"], doubled, dropout_rng)  # pylint: disable=protected-access
    loss, metrics = reader_terms(model, out, doubled, batch, totals)
    return loss, metrics, vectors_from_readouts(model, params, out)


def loss_fn(model: "CLASSModel", params: PyTree, batch: Mapping[str, Array],
            dropout_rng: Optional[Array]) -> tuple[Array, dict[str, Array]]:
    """The whole stage-1 loss of a batch in one pass (no microbatching): retrieval + per-chunk terms."""
    loss, metrics, vecs = reader_loss(model, params, batch, dropout_rng, chunk_totals(batch))
    retrieval, retrieval_metrics = retrieval_loss(model, params, vecs, batch)
    metrics.update(retrieval_metrics)
    metrics["loss"] = loss + retrieval
    return loss + retrieval, metrics


@dataclasses.dataclass(frozen=True)
class GradCacheParts:
    """The pieces of a loss whose retrieval term spans the whole batch, for trainer/grad_cache.py.

    Attributes:
      vectors: (params, microbatch, dropout_rng) -> retrieval vectors of the microbatch's rows.
      retrieval_loss: (params, vectors of the whole batch, whole batch) -> (loss, metrics).
      reader_loss: (params, microbatch, dropout_rng, totals) -> (loss share, metric shares, vectors).
      totals: whole batch -> the global counts `reader_loss` divides by.
    """

    vectors: Any
    retrieval_loss: Any
    reader_loss: Any
    totals: Any


def grad_cache_parts(model: "CLASSModel") -> GradCacheParts:
    """The stage-1 loss split for GradCache."""
    return GradCacheParts(
        vectors=lambda params, batch, rng: vectors(model, params, batch, rng),
        retrieval_loss=lambda params, vecs, batch: retrieval_loss(model, params, vecs, batch),
        reader_loss=lambda params, batch, rng, totals: reader_loss(model, params, batch, rng, totals),
        totals=chunk_totals)
