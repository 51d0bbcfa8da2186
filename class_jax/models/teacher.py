"""The stage-1 neural teacher's signals, computed on the fly for every global batch (docs/method.md#stage-1-clr-pt).

As in the release's `ReaderDistillTrainer`, the frozen English teacher (ReAtt in token mode, or any class_jax
model) reads the English queries and their passages in its own tokenization and gives:

  teacher_scores               [B, B*k]  every English query against every passage of the global batch (ColBERT
                                         for a token kind: the sum over query tokens of the max over passage
                                         tokens, no division by the query length);
  teacher_reader_distribution  [B, k]    its decoder's passage distribution: last decoder layer, first position,
                                         cross-attention summed per passage, mean over heads.

One FiD forward pass of the teacher gives both: its encoder over the (query, passage) pairs, and its decoder at the
first position only (which, being causal, sees nothing but the start token, so the answer is not needed).
"""

from typing import TYPE_CHECKING, Any, Mapping

import jax
import jax.numpy as jnp

from class_jax.models import losses
from class_jax.runtime import microbatches

if TYPE_CHECKING:
    from class_jax.models.class_model import CLASSModel

Array = jax.Array
PyTree = Any
TEACHER_FEATURES = ("teacher_query_tokens", "teacher_passage_tokens")


def teacher_signals(teacher: "CLASSModel", params: PyTree, batch: Mapping[str, Array],
                    num_microbatches: int = 1) -> dict[str, Array]:
    """The teacher's scores over the global batch and its decoder passage distribution (no gradient).

    Args:
      teacher: the teacher model (its config: retrieval kind, layer, head).
      params: its frozen parameters.
      batch: the global batch with `teacher_query_tokens` [B, Lq_t] and `teacher_passage_tokens` [B, k, Lp_t].
      num_microbatches: the forward pass runs in this many row groups (bounds activation memory like the
        student's microbatching); the scores are taken once over all of them.

    Returns:
      {"teacher_scores": [B, B*k] float32, "teacher_reader_distribution": [B, k] float32}.

    Raises:
      ValueError: the batch lacks the teacher's features (the task was built without the teacher's vocabulary).
    """
    missing = [name for name in TEACHER_FEATURES if name not in batch]
    if missing:
        raise ValueError(f"a neural stage-1 teacher needs the batch features {missing}: register the clr_pt task "
                         "with the teacher's vocabulary (TEACHER_VOCAB_PATH)")
    params = jax.lax.stop_gradient(params)
    queries, passages = batch["teacher_query_tokens"], batch["teacher_passage_tokens"]
    rows, k = passages.shape[:2]
    start = jnp.zeros((rows, 1), jnp.int32)  # the decoder's start token: all its first position sees

    def forward(group: tuple[Array, Array, Array]) -> tuple[Any, Any, Array]:
        query_tokens, passage_tokens, decoder_start = group
        out = teacher.module.apply({"params": params}, query_tokens, passage_tokens, decoder_start,
                                   deterministic=True)
        distribution = losses.reader_passage_distribution(out["cross_probs"], out["encoded_valid"], k)
        return (teacher._vectors(params, out["query_readout"], True),  # pylint: disable=protected-access
                teacher._vectors(params, out["passage_readout"], False),  # pylint: disable=protected-access
                distribution)

    if num_microbatches == 1:
        query_side, passage_side, distribution = forward((queries, passages, start))
    else:  # the train step's microbatches (runtime/microbatches.py), one after another
        groups = tuple(microbatches.stacked(x, num_microbatches) for x in (queries, passages, start))
        query_side, passage_side, distribution = microbatches.unstacked(jax.lax.map(forward, groups))
    scores = teacher.score(params, query_side, passage_side, queries.shape[1])
    return {"teacher_scores": scores.astype(jnp.float32),
            "teacher_reader_distribution": distribution.astype(jnp.float32)}
