"""Partitioning: mesh shapes, per-host batch rows, and the same training under different shardings."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

from class_jax.models.class_model import CLASSModel
from class_jax.models.config import ModelConfig
from class_jax.trainer import optimizers
from class_jax.runtime import partitioning
import trainer_testing


def test_resolve_mesh_shape_fills_one_axis():
    assert partitioning.resolve_mesh_shape((-1, 1, 2), 8) == (4, 1, 2)
    assert partitioning.resolve_mesh_shape((2, 2, 2), 8) == (2, 2, 2)
    with pytest.raises(ValueError, match="at most one"):
        partitioning.resolve_mesh_shape((-1, -1, 1), 8)
    with pytest.raises(ValueError, match="does not divide"):
        partitioning.resolve_mesh_shape((-1, 3, 1), 8)
    with pytest.raises(ValueError, match="holds"):
        partitioning.resolve_mesh_shape((2, 2, 1), 8)


def test_rules_naming_unknown_mesh_axes_are_rejected():
    with pytest.raises(ValueError, match="unknown mesh axis 'tensor'"):
        partitioning.Partitioner((-1, 1, 1), (("heads", "tensor"),))


def test_single_process_feeds_the_whole_batch_and_batches_are_split_over_data_axes():
    partitioner = partitioning.Partitioner((2, 2, 2))
    shard = partitioner.host_batch_shard(16)
    assert (shard.index, shard.num_shards, shard.local_batch_size) == (0, 1, 16)
    batch = partitioner.shard_batch({"tokens": np.arange(16 * 3).reshape(16, 3)}, 16)
    assert batch["tokens"].sharding.spec == P(("data", "fsdp"), None)
    assert {s.data.shape for s in batch["tokens"].addressable_shards} == {(4, 3)}
    with pytest.raises(ValueError, match="not divisible"):
        partitioner.host_batch_shard(6)


def test_hybrid_mesh_over_one_granule_equals_the_plain_mesh():
    hybrid = partitioning.Partitioner((1, -1, 2), dcn_mesh_shape=(-1, 1, 1), dcn_granule="process")
    assert dict(hybrid.mesh.shape) == {"data": 1, "fsdp": 4, "model": 2}


def test_data_parallel_and_fsdp_tp_train_identically_and_shard_as_the_rules_say(tmp_path):
    data_parallel = trainer_testing.tiny_sharding_partitioner("sharding/data_parallel.gin")
    fsdp_tp = trainer_testing.tiny_sharding_partitioner("sharding/fsdp_tp.gin", MODEL_PARALLELISM=2)
    assert dict(data_parallel.mesh.shape) == {"data": 8, "fsdp": 1, "model": 1}
    assert dict(fsdp_tp.mesh.shape) == {"data": 1, "fsdp": 4, "model": 2}

    dp_result = trainer_testing.train_tiny(tmp_path / "dp", data_parallel, total_steps=4)
    tp_result = trainer_testing.train_tiny(tmp_path / "fsdp_tp", fsdp_tp, total_steps=4)

    dp_losses = trainer_testing.loss_trajectory(tmp_path / "dp")
    tp_losses = trainer_testing.loss_trajectory(tmp_path / "fsdp_tp")
    assert sorted(dp_losses) == [1, 2, 3, 4]
    np.testing.assert_allclose([tp_losses[s] for s in sorted(dp_losses)], [dp_losses[s] for s in sorted(dp_losses)],
                               rtol=0, atol=1e-5)
    assert dp_losses[4] != dp_losses[1]  # it trained
    for dp_leaf, tp_leaf in zip(jax.tree_util.tree_leaves(dp_result.state.params),
                                jax.tree_util.tree_leaves(tp_result.state.params)):
        np.testing.assert_allclose(np.asarray(tp_leaf), np.asarray(dp_leaf), atol=1e-5)

    # Parameters: data parallel replicates everything; fsdp_tp follows its rules.
    dp_specs = partitioning.partition_specs_by_path(dp_result.state.params)
    assert all(axis is None for spec in dp_specs.values() for axis in spec)
    expected = {
        "token_embedder": P("model", "fsdp"),            # (vocab, embed)
        "encoder_wi": P("fsdp", None, "model"),          # (embed, None, mlp)
        "encoder_wo": P("model", "fsdp"),                # (mlp, embed)
        "qkv": P(None, "fsdp", "model", None),           # (None, embed, heads, kv)
        "attention_out": P("model", None, "fsdp"),       # (heads, kv, embed)
        "relpos_bias": P(None, "model"),                 # (relpos_buckets, heads)
        "decoder_norm_scale": P("fsdp"),                 # (embed,)
        "logits_dense": P("fsdp", "model"),              # (embed, vocab)
    }
    assert partitioning.partition_specs_by_path(tp_result.state.params) == expected
    embedder = tp_result.state.params["token_embedder"]
    assert {s.data.shape for s in embedder.addressable_shards} == {(32 // 2, 16 // 4)}
    # Adam's moments are sharded like their parameters.
    adam_state = tp_result.state.opt_state[1][0]
    assert partitioning.partition_specs_by_path(adam_state.mu) == expected
    assert partitioning.partition_specs_by_path(adam_state.nu) == expected


def test_adafactor_state_layout_shards_parameter_shaped_statistics_only():
    from class_jax.trainer import optimizers, train_state  # pylint: disable=import-outside-toplevel
    import trainer_test_model as tm  # pylint: disable=import-outside-toplevel

    partitioner = partitioning.Partitioner((1, -1, 1), (("batch", ("data", "fsdp")), ("embed", "fsdp")))
    optimizer = optimizers.adafactor(1e-2, min_dim_size_to_factor=8)
    shapes = {name: value.shape for name, value in tm.synthetic_global_batch(0, 8).items()}
    layout = train_state.build_state_layout(tm.TinyEncDecModel(), optimizer.transform, partitioner, shapes)
    flat = jax.tree_util.tree_flatten_with_path(layout.abstract_state.opt_state)[0]
    by_path = {jax.tree_util.keystr(path): leaf for path, leaf in flat}
    # Factored second moments of the (32, 16) embedding are a row and a column vector: replicated.
    v_row = next(leaf for path, leaf in by_path.items() if "v_row" in path and "token_embedder" in path)
    assert len(v_row.shape) == 1 and all(axis is None for axis in v_row.sharding.spec)
    # The unfactored second moment of the (16,) norm scale has its parameter's shape and sharding.
    v_scale = next(leaf for path, leaf in by_path.items() if ".v[" in path and "decoder_norm_scale" in path)
    assert v_scale.shape == (16,) and v_scale.sharding.spec == P("fsdp")


def test_cpu_inference_options_turn_off_ynnpack_fusions_without_changing_results():
    partitioner = partitioning.Partitioner()
    options = partitioner.inference_compiler_options()
    assert options == partitioning.CPU_INFERENCE_COMPILER_OPTIONS  # the test mesh is made of CPU devices

    def attention(q, k, v):  # the pattern the YNNPACK fusions ran slowly (see CPU_INFERENCE_COMPILER_OPTIONS)
        return jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(jnp.einsum("bqhd,bkhd->bhqk", q, k), axis=-1), v)

    q, k, v = np.random.default_rng(0).normal(size=(3, 2, 16, 4, 8)).astype(np.float32)
    default, tuned = jax.jit(attention), jax.jit(attention, compiler_options=options)
    assert "ynn_fusion" in default.lower(q, k, v).compile().as_text()  # else the option has nothing left to do
    assert "ynn_fusion" not in tuned.lower(q, k, v).compile().as_text()
    np.testing.assert_allclose(tuned(q, k, v), default(q, k, v), rtol=1e-5, atol=1e-6)


def test_cpu_training_options_change_no_result_of_a_donating_train_step():
    # The copies they drop appear at mT5-base sizes, not at mT5-small (2.4 GB per step; see bench/RESULTS.md),
    # too large for this suite; here the step's results must stay identical bit for bit.
    options = partitioning.Partitioner().training_compiler_options()
    assert options == partitioning.CPU_TRAINING_COMPILER_OPTIONS
    config = ModelConfig(vocab_size=64, emb_dim=16, num_heads=2, head_dim=8, mlp_dim=32, num_encoder_layers=2,
                         num_decoder_layers=1, dropout_rate=0.0)
    model = CLASSModel(config)
    shapes = {"query_tokens": (2, 4), "passage_tokens": (2, 2, 6), "decoder_input_tokens": (2, 3)}
    params = nn.unbox(model.get_initial_variables(jax.random.PRNGKey(0), shapes)["params"])
    optimizer = optimizers.adamw(1e-2).transform
    rng = np.random.default_rng(0)
    targets = rng.integers(2, 64, (2, 3))
    batch = {"query_tokens": rng.integers(2, 64, (2, 4)), "passage_tokens": rng.integers(2, 64, (2, 2, 6)),
             "decoder_target_tokens": targets, "decoder_loss_weights": np.ones((2, 3), np.float32),
             "decoder_input_tokens": np.concatenate([np.zeros((2, 1), int), targets[:, :-1]], 1)}

    def step(params, opt_state):  # each parameter is read by the model, then updated in place
        grads = jax.grad(lambda p: model.loss_fn(p, batch, None)[0])(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    results = {}
    for name, compiler_options in (("default", None), ("tuned", options)):
        compiled = jax.jit(step, donate_argnums=(0, 1), compiler_options=compiler_options)
        state = (jax.tree_util.tree_map(jnp.copy, params), optimizer.init(params))
        for _ in range(2):
            state = compiled(*state)
        results[name] = state
    jax.tree_util.tree_map(np.testing.assert_array_equal, results["tuned"], results["default"])
