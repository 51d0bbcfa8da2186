"""Stage 1's GradCache: the loss and gradients do not depend on the microbatch count (trainer/grad_cache.py).

Stage 1 (CLR-PT) scores every query against every passage of the global batch, so `num_microbatches` M > 1 runs
GradCache: the retrieval vectors of every microbatch first, the whole-batch retrieval loss and its vector gradients
once, then every microbatch again with the surrogate <v_m, dL/dv_m>. The frozen token-mode teacher also runs in M
row groups. A tiny random student and teacher on 8 queries x 3 passages (empty slots, ragged queries, passages and
answers) check that:

  * on one device, `train_step.loss_and_grads` gives the same metrics and gradients for M = 1, 2, 4 (a pooled
    student, and a token-mode student whose scores add the encoder's position bias, so the retrieval term also has
    a direct parameter gradient);
  * with dropout, GradCache's two passes of a microbatch draw the same masks (the vectors of `clr_pt.vectors` equal
    those of `clr_pt.reader_loss`), and its loss and gradients are those of the fixed-mask loss they describe;
  * on 8 devices, the compiled train step (data parallel over 8, and FSDP 4 x tensor parallel 2 from
    gin/sharding/fsdp_tp.gin) gives the same metrics, gradients and updated parameters for M = 1, 2, 4 as the
    one-device computation.

The compiled step's optimizer is SGD with momentum: after one step its momentum trace is the gradient exactly
(0.9 * 0 + g), so the gradients are read from the optimizer state without the rounding of params - lr * g.
Comparisons are per leaf, normalised by the leaf's largest magnitude (observed differences: about 2e-6).

XLA:CPU takes 10-30 s to compile each of these programs on two cores, so the default run keeps one of each kind
(the pooled student at M = 1, 2, 4; the dropout masks; FSDP x TP at M = 2), about a minute; `-m slow` runs the rest
(the token-mode student, the dropout gradients, the other five sharded cases), about three minutes more.
"""

import dataclasses
import functools
import pathlib
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from class_jax.models import clr_pt
from class_jax.models import teacher as teacher_lib
from class_jax.models.class_model import CLASSModel, LossConfig
from class_jax.models.config import ModelConfig
from class_jax.runtime import partitioning
from class_jax.trainer import optimizers
from class_jax.trainer import train_state
from class_jax.trainer import train_step
import trainer_testing

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "checkpoints"))
import checkpoint_fixtures as fx  # pylint: disable=wrong-import-position

_tokens = fx.random_token_rows

NUM_QUERIES, K, QUERY_LEN, PASSAGE_LEN, ANSWER_LEN = 8, 3, 6, 7, 4
STUDENT_VOCAB, TEACHER_VOCAB = 64, 48
RTOL = 1e-5
# Sizes divisible by the 4-way 'fsdp' (embed) and 2-way 'model' (heads, mlp, vocab, joined_kv) axes.
STUDENT = ModelConfig(vocab_size=STUDENT_VOCAB, emb_dim=16, num_heads=2, head_dim=4, mlp_dim=16, num_encoder_layers=2,
                      num_decoder_layers=1, retriever_layer=1, relative_attention_num_buckets=8, dropout_rate=0.0)
TOKEN_STUDENT = dataclasses.replace(STUDENT, retrieval_mode="token", retrieval_head=1, token_score_position_bias=True)
TEACHER = ModelConfig(vocab_size=TEACHER_VOCAB, emb_dim=8, num_heads=2, head_dim=4, mlp_dim=8, num_encoder_layers=2,
                      num_decoder_layers=1, retriever_layer=1, relative_attention_num_buckets=8, dropout_rate=0.0,
                      mlp_activations=("relu",), retrieval_mode="token", retrieval_head=1)
LOSS = LossConfig(stage="clr_pt", alpha=8.0)
MICROBATCH_COUNTS = (1, 2, 4)
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def _batch(seed: int = 0) -> dict[str, np.ndarray]:
    """8 queries x 3 passages: ragged lengths, four empty passage slots, answers of 1 to 4 tokens."""
    rng = np.random.default_rng(seed)
    shape_q, shape_p = (NUM_QUERIES, QUERY_LEN), (NUM_QUERIES, K, PASSAGE_LEN)
    passage_lengths = rng.integers(2, PASSAGE_LEN + 1, shape_p[:2])
    passage_lengths[[1, 4, 4, 6], [2, 1, 2, 0]] = 0  # empty slots (query 4 keeps one passage)
    targets = _tokens(rng, STUDENT_VOCAB, (NUM_QUERIES, ANSWER_LEN), rng.integers(1, ANSWER_LEN + 1, NUM_QUERIES),
                      eos=True)
    return {
        "query_tokens": _tokens(rng, STUDENT_VOCAB, shape_q, rng.integers(2, QUERY_LEN + 1, NUM_QUERIES), False),
        "english_query_tokens": _tokens(rng, STUDENT_VOCAB, shape_q, rng.integers(2, QUERY_LEN + 1, NUM_QUERIES),
                                        False),
        "passage_tokens": _tokens(rng, STUDENT_VOCAB, shape_p, passage_lengths, True),
        "decoder_target_tokens": targets,
        "decoder_input_tokens": np.concatenate([np.zeros((NUM_QUERIES, 1), np.int32), targets[:, :-1]], 1),
        "decoder_loss_weights": (targets > 0).astype(np.int32),
        "teacher_query_tokens": _tokens(rng, TEACHER_VOCAB, shape_q, rng.integers(2, QUERY_LEN + 1, NUM_QUERIES),
                                        False),
        # The teacher reads the same slots in its own tokenization: empty where the student's are.
        "teacher_passage_tokens": _tokens(rng, TEACHER_VOCAB, shape_p,
                                          np.where(passage_lengths > 0, rng.integers(2, PASSAGE_LEN + 1, shape_p[:2]),
                                                   0), True),
    }


def _init_params(model: CLASSModel, seed: int) -> dict:
    """Random parameters drawn in numpy (a jitted Flax init costs seconds of compilation on a small CPU): kernels
    N(0, 1 / fan_in), embeddings N(0, 1), norm scales 1 + N(0, 0.1^2), position biases N(0, 0.5^2)."""
    shapes = jax.eval_shape(
        lambda r: nn.unbox(model.get_initial_variables(r, CLASSModel.init_shapes())["params"]), jax.random.key(0))
    rng = np.random.default_rng(seed)

    def draw(path, leaf) -> np.ndarray:
        name = jax.tree_util.keystr(path)
        if "scale" in name:
            value = 1.0 + 0.1 * rng.standard_normal(leaf.shape)
        elif "embedding" in name:
            value = (0.5 if "rel_embedding" in name else 1.0) * rng.standard_normal(leaf.shape)
        else:
            value = rng.standard_normal(leaf.shape) / np.sqrt(leaf.shape[0])
        return value.astype(leaf.dtype)

    return jax.tree_util.tree_map_with_path(draw, shapes)


@functools.lru_cache(maxsize=None)
def _models(student_config: ModelConfig = STUDENT):
    student, teacher = CLASSModel(student_config, LOSS), CLASSModel(TEACHER)
    return student, _init_params(student, 1), teacher, _init_params(teacher, 2)


def _flat(tree) -> dict[str, np.ndarray]:
    return {jax.tree_util.keystr(path): np.asarray(leaf)
            for path, leaf in jax.tree_util.tree_flatten_with_path(jax.device_get(tree))[0]}


def _assert_trees_close(actual, expected, what: str, rtol: float = RTOL) -> None:
    """Every leaf within `rtol` of its largest magnitude (max-abs-normalised), the same set of leaves."""
    actual, expected = _flat(actual), _flat(expected)
    assert set(actual) == set(expected), what
    for name, value in expected.items():
        scale = max(float(np.max(np.abs(value))), 1e-6)
        error = float(np.max(np.abs(actual[name] - value)))
        assert error <= rtol * scale, f"{what} {name}: max |diff| {error:.3g} > {rtol} * {scale:.3g}"


def _assert_metrics_close(actual, expected, what: str) -> None:
    assert set(expected) <= set(actual), what
    for name in sorted(expected):
        value, other = float(expected[name]), float(actual[name])
        assert abs(other - value) <= RTOL * max(abs(value), 1e-6), f"{what} {name}: {other!r} vs {value!r}"


@functools.lru_cache(maxsize=None)
def _one_device_result(student_config: ModelConfig, num_microbatches: int):
    """(gradients, metrics) of `loss_and_grads` jitted on one device, no dropout.

    XLA:CPU's backend optimisation level 0 compiles these several times faster; the comparisons are between the
    microbatch counts (and with the compiled train step), not with an outside reference.
    """
    student, params, teacher, teacher_params = _models(student_config)
    fn = jax.jit(lambda p, tp, b: train_step.loss_and_grads(student, p, b, None, num_microbatches=num_microbatches,
                                                            teacher=teacher, teacher_params=tp),
                 compiler_options=FAST_COMPILE)
    return jax.device_get(fn(params, teacher_params, _batch()))


@pytest.mark.parametrize("student_config", [
    pytest.param(STUDENT, id="pooled"),
    pytest.param(TOKEN_STUDENT, id="token_position_bias", marks=pytest.mark.slow)])
def test_loss_and_gradients_do_not_depend_on_the_microbatch_count(student_config):
    full_grads, full_metrics = _one_device_result(student_config, 1)
    for name in ("loss/kl_teacher_en", "loss/kl_teacher_xx", "loss/kl_en_xx", "loss/ce", "loss/kl_decoder_teacher",
                 "loss/kl_answer_alignment"):
        assert full_metrics[name] > 1e-3, name  # every term is exercised
    assert full_metrics["num_tokens"] == 2 * _batch()["decoder_loss_weights"].sum()  # English + target chunks
    for num_microbatches in MICROBATCH_COUNTS[1:]:
        grads, metrics = _one_device_result(student_config, num_microbatches)
        assert set(metrics) == set(full_metrics)
        _assert_metrics_close(metrics, full_metrics, f"M={num_microbatches}")
        _assert_trees_close(grads, full_grads, f"M={num_microbatches} gradient")
    flat = _flat(full_grads)
    for name in ("['token_embedder']['embedding']", "['decoder']['logits_dense']['kernel']",
                 "['encoder']['layers_0']['attention']['query']['kernel']"):
        assert np.abs(flat[name]).max() > 1e-4, name  # the compared gradients are not vacuous
    if student_config.retrieval_mode == "pooled":
        assert np.abs(flat["['encoder']['retriever']['query_proj']['kernel']"]).max() > 1e-4
    else:  # the retrieval term's direct parameter gradient (layer B's position bias in the scores) is in play
        assert np.abs(flat["['encoder']['relpos_bias']['rel_embedding']"]).max() > 1e-4


DROPOUT_MICROBATCHES = 2
DROPOUT_STUDENT = dataclasses.replace(STUDENT, dropout_rate=0.1)


def _dropout_microbatches(teacher, teacher_params, batch, step_rng):
    """(batch with the teacher's signals, microbatches, their dropout keys) as GradCache forms them at M = 2:
    microbatch m holds rows m, m + M, ... (train_step's [B / M, M] view) and uses fold_in(step_rng, m)."""
    batch = {**batch, **teacher_lib.teacher_signals(teacher, teacher_params, batch, DROPOUT_MICROBATCHES)}
    microbatches = [{name: value[m::DROPOUT_MICROBATCHES] for name, value in batch.items()}
                    for m in range(DROPOUT_MICROBATCHES)]
    return batch, microbatches, [jax.random.fold_in(step_rng, m) for m in range(DROPOUT_MICROBATCHES)]


def test_with_dropout_both_passes_of_a_microbatch_draw_the_same_masks():
    """GradCache's first pass (`clr_pt.vectors`, the encoder alone) and second pass (`clr_pt.reader_loss`, the whole
    forward pass) of a microbatch under its key give the same retrieval vectors, so the cached vector gradients
    belong to the vectors the second pass differentiates."""
    _, params, teacher, teacher_params = _models(STUDENT)
    student = CLASSModel(DROPOUT_STUDENT, LOSS)

    def passes(p, tp, b, step_rng):
        b, microbatches, keys = _dropout_microbatches(teacher, tp, b, step_rng)
        totals = clr_pt.chunk_totals(b)
        return ([clr_pt.vectors(student, p, mb, key) for mb, key in zip(microbatches, keys)],
                [clr_pt.reader_loss(student, p, mb, key, totals)[2] for mb, key in zip(microbatches, keys)],
                [clr_pt.vectors(student, p, mb, None) for mb in microbatches])

    first_pass, second_pass, deterministic = jax.device_get(jax.jit(passes, compiler_options=FAST_COMPILE)(
        params, teacher_params, _batch(), jax.random.PRNGKey(7)))
    for m in range(DROPOUT_MICROBATCHES):
        _assert_trees_close(first_pass[m], second_pass[m], f"microbatch {m} vectors, first vs second pass",
                            rtol=1e-6)
        for name, value in _flat(first_pass[m]).items():  # dropout is on: the equality is about the masks
            assert np.max(np.abs(value - _flat(deterministic[m])[name])) > 1e-2, name


@pytest.mark.slow
def test_with_dropout_loss_and_gradients_are_those_of_the_fixed_mask_loss():
    """M = 2 with dropout: the reported loss and the gradients are those of
    sum_m reader_loss_m + retrieval_loss(vectors of every m), each microbatch under its key, differentiated in one
    piece (no cached vector gradients, no surrogate)."""
    _, params, teacher, teacher_params = _models(STUDENT)
    student = CLASSModel(DROPOUT_STUDENT, LOSS)

    def both(p, tp, b, step_rng):
        grads, metrics = train_step.loss_and_grads(student, p, b, step_rng, num_microbatches=DROPOUT_MICROBATCHES,
                                                   teacher=teacher, teacher_params=tp)
        b, microbatches, keys = _dropout_microbatches(teacher, tp, b, step_rng)
        totals = clr_pt.chunk_totals(b)

        def fixed_mask_loss(q):
            shares, vectors = zip(*[clr_pt.reader_loss(student, q, mb, key, totals)[::2]
                                    for mb, key in zip(microbatches, keys)])
            whole = jax.tree_util.tree_map(  # back to batch order: microbatch m's row i is row i * M + m
                lambda *parts: jnp.stack(parts, axis=1).reshape((-1,) + parts[0].shape[1:]), *vectors)
            return sum(shares) + clr_pt.retrieval_loss(student, q, whole, b)[0]

        loss, expected_grads = jax.value_and_grad(fixed_mask_loss)(p)
        return grads, metrics, expected_grads, loss

    grads, metrics, expected_grads, loss = jax.device_get(jax.jit(both, compiler_options=FAST_COMPILE)(
        params, teacher_params, _batch(), jax.random.PRNGKey(7)))
    np.testing.assert_allclose(float(metrics["loss"]), float(loss), rtol=RTOL)
    _assert_trees_close(grads, expected_grads, "dropout gradient")
    assert np.abs(_flat(grads)["['encoder']['retriever']['query_proj']['kernel']"]).max() > 1e-4
    # The masks are in play: the loss differs from the dropout-free one.
    assert abs(float(metrics["loss"]) - float(_one_device_result(STUDENT, 1)[1]["loss"])) > 1e-3


# ------------------------------------------------------------------------------------------------ 8 devices
def _partitioner(name: str) -> partitioning.Partitioner:
    if name == "data_parallel":
        partitioner = trainer_testing.tiny_sharding_partitioner("sharding/data_parallel.gin")
        assert dict(partitioner.mesh.shape) == {"data": 8, "fsdp": 1, "model": 1}
    else:
        partitioner = trainer_testing.tiny_sharding_partitioner("sharding/fsdp_tp.gin", MODEL_PARALLELISM=2)
        assert dict(partitioner.mesh.shape) == {"data": 1, "fsdp": 4, "model": 2}
    return partitioner


def _compiled_step(partitioner_name: str, num_microbatches: int):
    """(updated params, gradients, metrics) of one compiled train step from the shared initial params."""
    if len(jax.devices()) < 8:
        pytest.skip("needs 8 (fake) devices: tests/conftest.py sets --xla_force_host_platform_device_count=8")
    partitioner = _partitioner(partitioner_name)
    student, params, teacher, teacher_params = _models(STUDENT)
    optimizer = optimizers.Optimizer(optax.sgd(1.0, momentum=0.9), optax.constant_schedule(1.0))
    batch = _batch()
    spec = {name: (value.shape, value.dtype) for name, value in batch.items()}
    layout = train_state.build_state_layout(student, optimizer.transform, partitioner,
                                            {name: shape for name, (shape, _) in spec.items()})
    _, teacher_shardings = train_state.build_param_layout(teacher, partitioner, CLASSModel.init_shapes())
    placed_teacher = jax.device_put(teacher_params, teacher_shardings)
    step_fn = train_step.make_train_step(student, optimizer, num_microbatches, "num_tokens", teacher=teacher)
    compiled = train_step.compile_train_step(step_fn, partitioner, layout, spec, jax.random.PRNGKey(0),
                                             teacher_params=placed_teacher)
    state = train_state.reinit_opt_state(optimizer.transform, partitioner, layout,
                                         jax.device_put(params, layout.shardings.params))
    state, metrics = compiled(state, partitioner.shard_batch(batch, NUM_QUERIES), jax.random.PRNGKey(0),
                              placed_teacher)
    momentum = state.opt_state[0].trace  # optax.sgd(momentum=0.9) = (trace, scale): the first trace is the gradient
    return jax.device_get(state.params), jax.device_get(momentum), jax.device_get(metrics)


@pytest.mark.parametrize("partitioner_name, num_microbatches", [
    pytest.param(name, m, id=f"{name}-M{m}",
                 marks=() if (name, m) == ("fsdp_tp", 2) else pytest.mark.slow)  # ~20-40 s of compilation each
    for name in ("data_parallel", "fsdp_tp") for m in MICROBATCH_COUNTS])
def test_sharded_train_step_does_not_depend_on_the_microbatch_count(partitioner_name, num_microbatches):
    reference_grads, reference_metrics = _one_device_result(STUDENT, 1)
    params = _models(STUDENT)[1]
    new_params, grads, metrics = _compiled_step(partitioner_name, num_microbatches)
    _assert_metrics_close(metrics, reference_metrics, "metrics")
    np.testing.assert_allclose(float(metrics["grad_norm"]), float(optax.global_norm(reference_grads)), rtol=RTOL)
    _assert_trees_close(grads, reference_grads, "gradient")
    # SGD, learning rate 1: params - g (the subtraction rounds relative to the parameters' magnitude, ~1).
    _assert_trees_close(new_params, jax.tree_util.tree_map(lambda p, g: p - g, params, reference_grads),
                        "updated params")
    changed = jax.tree_util.tree_map(lambda a, b: float(np.max(np.abs(a - b))), new_params, params)
    assert max(jax.tree_util.tree_leaves(changed)) > 1e-3  # the step moved the parameters
