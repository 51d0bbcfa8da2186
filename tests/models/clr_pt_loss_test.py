"""Stage-1 loss inside CLASSModel: where own-passage teacher scores land in the global-batch matrices."""

import flax.linen as nn
import jax
import numpy as np

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
    return float(np.sum(target * (np.log(target) - log_q)))


def test_own_passage_teacher_scores_compare_each_query_with_its_own_passages_only():
    model = CLASSModel(TINY, LossConfig(stage="clr_pt", teacher_temperature=0.5))
    shapes = {"query_tokens": (2, 5), "passage_tokens": (2, 3, 8), "decoder_input_tokens": (2, 4)}
    params = nn.unbox(model.get_initial_variables(jax.random.PRNGKey(0), shapes)["params"])
    batch = _batch()
    _, metrics = jax.jit(model.loss_fn)(params, batch, None)

    queries = model.encode_for_retrieval(params, batch["query_tokens"], True)
    english = model.encode_for_retrieval(params, batch["english_query_tokens"], True)
    passages = model.encode_for_retrieval(params, batch["passage_tokens"].reshape(6, 8), False)
    s_xx = np.asarray(model.score(params, queries, passages)).reshape(2, 2, 3)
    s_en = np.asarray(model.score(params, english, passages)).reshape(2, 2, 3)
    present = [[0, 1, 2], [0, 1]]  # query 1's third slot is empty
    expected_xx, expected_en = 0.0, 0.0
    for b, slots in enumerate(present):
        teacher = np.exp(batch["teacher_scores"][b, slots] / 0.5)
        teacher /= teacher.sum()
        expected_xx += _kl(teacher, s_xx[b, b, slots]) / 2
        expected_en += _kl(teacher, s_en[b, b, slots]) / 2
    np.testing.assert_allclose(metrics["loss/kl_teacher_xx"], expected_xx, rtol=1e-4)
    np.testing.assert_allclose(metrics["loss/kl_teacher_en"], expected_en, rtol=1e-4)
