"""Stage-1 loss inside CLASSModel: where own-passage teacher scores land in the global-batch matrices."""

import flax.linen as nn
import jax
import numpy as np
import pytest

from class_jax.models import losses
from class_jax.models.class_model import CLASSModel, LossConfig
from class_jax.models.config import ModelConfig

TINY = ModelConfig(vocab_size=67, emb_dim=16, num_heads=3, head_dim=5, mlp_dim=24, num_encoder_layers=4,
                   num_decoder_layers=2, relative_attention_num_buckets=8, dropout_rate=0.0)


def _batch() -> dict[str, np.ndarray]:
    rng = np.random.RandomState(0)
    targets = rng.randint(2, 67, (2, 4))
    passages = rng.randint(2, 67, (2, 3, 8))
    passages[1, 2] = 0  # an empty slot: no teacher mass, not a negative either
    return {"query_tokens": rng.randint(2, 67, (2, 5)), "english_query_tokens": rng.randint(2, 67, (2, 5)),
            "passage_tokens": passages, "decoder_target_tokens": targets,
            "decoder_input_tokens": np.concatenate([np.zeros((2, 1), int), targets[:, :-1]], 1),
            "decoder_loss_weights": np.ones((2, 4), np.float32),
            "teacher_scores": rng.randn(2, 3).astype(np.float32)}


def _kl(target: np.ndarray, scores: np.ndarray) -> float:
    log_q = scores - np.log(np.sum(np.exp(scores)))
    return float(np.sum(np.where(target > 0, target * np.log(np.maximum(target, 1e-30)), 0.0) - target * log_q))


def _student_scores(model, params, batch):
    queries = model.encode_for_retrieval(params, batch["query_tokens"], True)
    english = model.encode_for_retrieval(params, batch["english_query_tokens"], True)
    passages = model.encode_for_retrieval(params, batch["passage_tokens"].reshape(6, 8), False)
    s_xx = np.asarray(model.score(params, queries, passages)).reshape(2, 6)
    s_en = np.asarray(model.score(params, english, passages)).reshape(2, 6)
    return s_xx, s_en


def _loss_metrics(unscored_passages: str, batch):
    model = CLASSModel(TINY, LossConfig(stage="clr_pt", teacher_temperature=0.5,
                                        unscored_passages=unscored_passages))
    shapes = {"query_tokens": (2, 5), "passage_tokens": (2, 3, 8), "decoder_input_tokens": (2, 4)}
    params = nn.unbox(model.get_initial_variables(jax.random.PRNGKey(0), shapes)["params"])
    _, metrics = jax.jit(model.loss_fn)(params, batch, None)
    return metrics, _student_scores(model, params, batch)


def _expected(batch, s_xx, s_en, own_slots, student_slots):
    expected_xx, expected_en = 0.0, 0.0
    for b in range(2):
        teacher = np.zeros(6)
        teacher[[3 * b + slot for slot in own_slots[b]]] = np.exp(batch["teacher_scores"][b, own_slots[b]] / 0.5)
        teacher = teacher[student_slots[b]] / teacher.sum()
        expected_xx += _kl(teacher, s_xx[b, student_slots[b]]) / 2
        expected_en += _kl(teacher, s_en[b, student_slots[b]]) / 2
    return expected_xx, expected_en


def test_ignore_compares_each_query_with_its_own_passages_only():
    batch = _batch()
    metrics, (s_xx, s_en) = _loss_metrics("ignore", batch)
    own_slots = [[0, 1, 2], [0, 1]]  # query 1's third slot is empty
    expected_xx, expected_en = _expected(batch, s_xx, s_en, own_slots, [[0, 1, 2], [3, 4]])
    np.testing.assert_allclose(metrics["loss/kl_teacher_xx"], expected_xx, rtol=1e-4)
    np.testing.assert_allclose(metrics["loss/kl_teacher_en"], expected_en, rtol=1e-4)


def test_negatives_puts_other_queries_passages_in_the_student_softmax_without_their_copies():
    batch = _batch()
    batch["passage_tokens"][1, 0] = batch["passage_tokens"][0, 1]  # the two queries share one passage
    metrics, (s_xx, s_en) = _loss_metrics("negatives", batch)
    own_slots = [[0, 1, 2], [0, 1]]
    # Query 0 sees query 1's slot 1 as a negative but not slot 0 (a copy of its own slot 1); query 1 likewise
    # drops query 0's slot 1; the empty slot (row 5) is nobody's candidate.
    expected_xx, expected_en = _expected(batch, s_xx, s_en, own_slots, [[0, 1, 2, 4], [0, 2, 3, 4]])
    np.testing.assert_allclose(metrics["loss/kl_teacher_xx"], expected_xx, rtol=1e-4)
    np.testing.assert_allclose(metrics["loss/kl_teacher_en"], expected_en, rtol=1e-4)
    assert metrics["loss/kl_teacher_xx"] > 0 and metrics["loss/kl_en_xx"] > 0


def test_copies_of_own_passages_match_whole_rows_and_never_empty_slots():
    tokens = np.array([[[5, 6, 0], [7, 8, 9]], [[7, 8, 9], [0, 0, 0]]])
    copies = np.asarray(losses.copies_of_own_passages(tokens))
    # Rows of the batch: [5 6], [7 8 9], [7 8 9] (query 1's copy of query 0's second passage), empty.
    np.testing.assert_array_equal(copies, [[True, True, True, False], [False, True, True, False]])
    tokens[1, 0, 2] = 0  # now a prefix of that passage: a different passage
    np.testing.assert_array_equal(np.asarray(losses.copies_of_own_passages(tokens)),
                                  [[True, True, False, False], [False, False, True, False]])


def _decoder_teacher_model() -> CLASSModel:
    # Only the decoder-teacher term: no answer CE, no retrieval KLs.
    return CLASSModel(TINY, LossConfig(stage="clr_pt", ce_weight=0.0, teacher_temperature=0.5, kl_teacher_en=False,
                                       kl_teacher_xx=False, kl_en_xx=False, decoder_teacher_kl=True,
                                       answer_alignment_kl=False))


@pytest.mark.slow  # ~45 s; clr_pt_release_test.py checks the decoder term against the release's formula
def test_decoder_teacher_kl_trains_the_readers_passage_distribution_towards_the_retrieval_teacher():
    model, batch = _decoder_teacher_model(), _batch()
    shapes = {"query_tokens": (2, 5), "passage_tokens": (2, 3, 8), "decoder_input_tokens": (2, 4)}
    params = nn.unbox(model.get_initial_variables(jax.random.PRNGKey(0), shapes)["params"])
    expected, teachers = 0.0, np.zeros((2, 3), np.float32)
    for query_tokens in (batch["english_query_tokens"], batch["query_tokens"]):  # both chunks of each query
        out = model._forward(params, query_tokens, batch, None)  # pylint: disable=protected-access
        reader = np.asarray(losses.reader_passage_distribution(out["cross_probs"], out["encoded_valid"], 3))
        for b, slots in enumerate([[0, 1, 2], [0, 1]]):  # query 1's third slot is empty
            teacher = np.exp(batch["teacher_scores"][b, slots] / 0.5)
            teacher /= teacher.sum()
            teachers[b, slots] = teacher
            expected += float(np.sum(teacher * (np.log(teacher) - np.log(reader[b, slots])))) / 4
    loss, metrics = jax.jit(model.loss_fn)(params, batch, None)
    np.testing.assert_allclose(metrics["loss/kl_decoder_teacher"], expected, rtol=1e-4)
    np.testing.assert_allclose(loss, expected, rtol=1e-4)  # weight 1, as in the release
    # The gradient reaches the decoder's cross-attention: the term trains the reader, not only the retriever.
    grads = jax.grad(lambda p: model.loss_fn(p, batch, None)[0])(params)
    cross = grads["decoder"]["layers_1"]["encoder_decoder_attention"]["query"]["kernel"]
    assert np.abs(np.asarray(cross)).max() > 0
    # A neural teacher's decoder distribution takes the place of the BM25 stand-in.
    _, neural = jax.jit(model.loss_fn)(params, {**batch, "teacher_reader_distribution": teachers}, None)
    np.testing.assert_allclose(neural["loss/kl_decoder_teacher"], expected, rtol=1e-4)
