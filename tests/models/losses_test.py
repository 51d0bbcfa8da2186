"""Loss functions: hand-checked values and numerically checked gradients."""

import jax
import jax.numpy as jnp
import numpy as np

from class_jax.models import losses
from class_jax.models import scoring

jax.config.update("jax_enable_x64", False)


def test_kl_matches_hand_computation_and_ignores_masked_entries():
    target = jnp.array([[0.5, 0.5, 0.0]])
    scores = jnp.array([[0.0, jnp.log(3.0), 7.0]])
    mask = jnp.array([[True, True, False]])
    # Restricted to the first two entries, softmax(scores) = (1/4, 3/4).
    expected = 0.5 * np.log(0.5 / 0.25) + 0.5 * np.log(0.5 / 0.75)
    np.testing.assert_allclose(losses.reader_retriever_kl(target, scores, mask), expected, rtol=1e-5)


def test_kl_skips_rows_without_any_candidate():
    target = jnp.array([[1.0, 0.0], [0.0, 0.0]])
    scores = jnp.array([[0.0, 0.0], [1.0, 2.0]])
    mask = jnp.array([[True, True], [False, False]])
    np.testing.assert_allclose(losses.reader_retriever_kl(target, scores, mask), np.log(2.0), rtol=1e-5)


def test_kl_gradient_matches_finite_differences():
    rng = np.random.RandomState(0)
    target = jax.nn.softmax(jnp.asarray(rng.randn(3, 4), jnp.float32))
    scores = jnp.asarray(rng.randn(3, 4), jnp.float32)
    mask = jnp.asarray(rng.rand(3, 4) > 0.2)
    target = jnp.where(mask, target, 0.0)
    target = target / target.sum(-1, keepdims=True)
    fn = lambda s: losses.reader_retriever_kl(target, s, mask)
    analytic = np.asarray(jax.grad(fn)(scores))
    eps = 1e-2
    numeric = np.zeros_like(analytic)
    for index in np.ndindex(*scores.shape):
        bump = np.zeros(scores.shape, np.float32)
        bump[index] = eps
        numeric[index] = (fn(scores + bump) - fn(scores - bump)) / (2 * eps)
    np.testing.assert_allclose(analytic, numeric, atol=2e-3)
    # Closed form: d KL / d s = (softmax(s) - t) / rows, zero where masked.
    probs = np.asarray(jnp.exp(losses.masked_log_softmax(scores, mask)))
    closed = np.where(np.asarray(mask), probs - np.asarray(target), 0.0) / 3
    np.testing.assert_allclose(analytic, closed, atol=1e-5)


def test_clr_pt_terms_and_stop_gradient():
    rng = np.random.RandomState(1)
    teacher = jnp.asarray(rng.randn(2, 6), jnp.float32)
    s_en = jnp.asarray(rng.randn(2, 6), jnp.float32)
    s_xx = jnp.asarray(rng.randn(2, 6), jnp.float32)
    mask = jnp.ones((2, 6), bool)
    terms = losses.clr_pt_retrieval_losses(teacher, s_en, s_xx, mask, teacher_temperature=0.5)
    t = np.asarray(jax.nn.softmax(teacher / 0.5))
    p_en, p_xx = np.asarray(jax.nn.softmax(s_en)), np.asarray(jax.nn.softmax(s_xx))
    kl = lambda a, b: np.mean(np.sum(a * np.log(a / b), -1))
    np.testing.assert_allclose(terms["kl_teacher_en"], kl(t, p_en), rtol=1e-5)
    np.testing.assert_allclose(terms["kl_teacher_xx"], kl(t, p_xx), rtol=1e-5)
    np.testing.assert_allclose(terms["kl_en_xx"], kl(p_en, p_xx), rtol=1e-5)
    # KL(sg(S_en) ‖ S_xx) must not push S_en.
    grad_en = jax.grad(lambda s: losses.clr_pt_retrieval_losses(teacher, s, s_xx, mask)["kl_en_xx"])(s_en)
    np.testing.assert_array_equal(grad_en, 0.0)


def test_cross_entropy_weights_and_accuracy():
    logits = jnp.log(jnp.array([[[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]]))
    targets = jnp.array([[0, 1]])
    loss, count, correct = losses.cross_entropy(logits, targets, jnp.array([[1.0, 0.0]]))
    np.testing.assert_allclose(loss, -np.log(0.7), rtol=1e-5)
    assert count == 1 and correct == 1


def test_maxsim_matches_a_direct_loop_and_chunking():
    rng = np.random.RandomState(2)
    q, qv = rng.randn(2, 4, 3).astype(np.float32), rng.rand(2, 4) > 0.3
    p, pv = rng.randn(5, 6, 3).astype(np.float32), rng.rand(5, 6) > 0.3
    pv[4] = False
    bias = rng.randn(4, 6).astype(np.float32)
    expected = np.zeros((2, 5), np.float32)
    for a in range(2):
        for b in range(5):
            if not pv[b].any():
                expected[a, b] = -1e9
                continue
            total = 0.0
            for i in range(4):
                if qv[a, i]:
                    total += max(q[a, i] @ p[b, j] + bias[i, j] for j in range(6) if pv[b, j])
            expected[a, b] = total / max(qv[a].sum(), 1)
    got = scoring.maxsim_scores(q, qv, p, pv, bias, length_norm=True)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    chunked = scoring.maxsim_scores(q, qv, p, pv, bias, length_norm=True, chunk_size=2)
    np.testing.assert_allclose(chunked, expected, rtol=1e-5)
