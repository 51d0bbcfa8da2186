"""The real CLASS model (tiny config) through the trainer: shardings, export to params_io, warm start, bf16/remat."""

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from class_jax.checkpoints import params_io
from class_jax.models.class_model import CLASSModel
from class_jax.models.config import ModelConfig
from class_jax.trainer import data
from class_jax.trainer import export
from class_jax.runtime import gin_utils
from class_jax.runtime import partitioning
import trainer_testing

CONFIG = ModelConfig(vocab_size=64, emb_dim=16, num_heads=2, head_dim=8, mlp_dim=32, num_encoder_layers=2,
                     num_decoder_layers=1, dropout_rate=0.0)
BATCH, PASSAGES, QUERY_LEN, PASSAGE_LEN, ANSWER_LEN = 8, 2, 4, 6, 3


def fid_global_batch(index: int, global_batch_size: int) -> dict[str, np.ndarray]:
    """Batch `index` of random FiD examples: ragged queries, k passages ending in EOS, short answers."""
    rng = np.random.default_rng([11, index])
    query = rng.integers(2, CONFIG.vocab_size, (global_batch_size, QUERY_LEN), dtype=np.int32)
    query[:, QUERY_LEN - 1:][rng.random((global_batch_size, 1)) < 0.5] = 0
    passages = rng.integers(2, CONFIG.vocab_size, (global_batch_size, PASSAGES, PASSAGE_LEN), dtype=np.int32)
    passages[..., -1] = 1
    answer = rng.integers(2, CONFIG.vocab_size, (global_batch_size, ANSWER_LEN), dtype=np.int32)
    answer[:, -1] = 1
    decoder_input = np.concatenate([np.zeros((global_batch_size, 1), np.int32), answer[:, :-1]], axis=1)
    return {"query_tokens": query, "passage_tokens": passages, "decoder_input_tokens": decoder_input,
            "decoder_target_tokens": answer, "decoder_loss_weights": np.ones_like(answer)}


def fid_host_iterator(shard):
    index = 0
    while True:
        batch = fid_global_batch(index, shard.global_batch_size)
        rows = slice(shard.index * shard.local_batch_size, (shard.index + 1) * shard.local_batch_size)
        yield {name: value[rows] for name, value in batch.items()}
        index += 1


def train_class(model_dir, partitioner, total_steps, model=None, **kwargs):
    return trainer_testing.train_tiny(
        model_dir, partitioner, total_steps=total_steps, model=model or CLASSModel(CONFIG, max_decode_length=3),
        train_dataset_cfg=data.IteratorDataSource(fid_host_iterator, BATCH), **kwargs)


@pytest.fixture(scope="module")
def data_parallel_run(tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("class_dp") / "run"
    result = train_class(model_dir, partitioning.Partitioner((-1, 1, 1)), total_steps=3)
    return model_dir, result


@pytest.mark.slow
def test_class_model_trains_identically_under_fsdp_tp_and_shards_by_the_rules(data_parallel_run, tmp_path):
    dp_dir, dp_result = data_parallel_run
    fsdp_tp = trainer_testing.tiny_sharding_partitioner("sharding/fsdp_tp.gin")
    tp_result = train_class(tmp_path / "fsdp_tp", fsdp_tp, total_steps=3)
    dp_losses = trainer_testing.loss_trajectory(dp_dir)
    tp_losses = trainer_testing.loss_trajectory(tmp_path / "fsdp_tp")
    np.testing.assert_allclose([tp_losses[s] for s in (1, 2, 3)], [dp_losses[s] for s in (1, 2, 3)], atol=1e-5)
    record = trainer_testing.read_metrics(dp_dir)[-1]
    assert "loss/kl_reader_retriever" in record and "loss/ce" in record and "perf/mfu" in record

    specs = partitioning.partition_specs_by_path(tp_result.state.params)
    assert specs["token_embedder/embedding"] == P("model", "fsdp")
    assert specs["encoder/layers_0/attention/query/kernel"] == P("fsdp", "model")
    assert specs["encoder/layers_1/mlp/wo/kernel"] == P("model", "fsdp")
    assert specs["encoder/retriever/query_proj/kernel"] == P("fsdp", "model")
    assert specs["encoder/relpos_bias/rel_embedding"] == P("model", None)
    assert specs["decoder/decoder_norm/scale"] == P("fsdp")
    for dp_leaf, tp_leaf in zip(jax.tree_util.tree_leaves(dp_result.state.params),
                                jax.tree_util.tree_leaves(tp_result.state.params)):
        np.testing.assert_allclose(np.asarray(tp_leaf), np.asarray(dp_leaf), atol=1e-5)


def test_export_writes_params_io_and_warm_start_reads_it_back(data_parallel_run, tmp_path):
    dp_dir, dp_result = data_parallel_run
    written = export.export(model=CLASSModel(CONFIG), checkpoint_path=str(dp_dir),
                            output_dir=str(tmp_path / "exported"))
    params, config = params_io.load_params(written)
    assert config == CONFIG
    trained = jax.device_get(dp_result.state.params)
    jax.tree_util.tree_map(np.testing.assert_array_equal, params, trained)

    warm = train_class(tmp_path / "warm", partitioning.Partitioner((-1, 1, 1)), total_steps=1,
                       initial_checkpoint=str(written),
                       initial_checkpoint_name_mapping=[(r"decoder/logits_dense/kernel", None)])
    # Learning rate 0 at step 0: the warm-started parameters are the exported ones, except the one kept fresh.
    np.testing.assert_array_equal(np.asarray(warm.state.params["encoder"]["layers_0"]["attention"]["query"]["kernel"]),
                                  params["encoder"]["layers_0"]["attention"]["query"]["kernel"])
    assert not np.array_equal(np.asarray(warm.state.params["decoder"]["logits_dense"]["kernel"]),
                              params["decoder"]["logits_dense"]["kernel"])


@pytest.mark.slow
def test_bf16_compute_and_remat_from_gin_keep_float32_params(tmp_path):
    import gin  # pylint: disable=import-outside-toplevel
    gin_utils.parse_gin(["models/mt5_tiny.gin", "runs/bf16.gin", "runs/remat.gin"],
                        ["NUM_EMBEDDINGS = 64", "config.ModelConfig.emb_dim = 16", "config.ModelConfig.mlp_dim = 32",
                         "config.ModelConfig.num_heads = 2", "config.ModelConfig.head_dim = 8",
                         "config.ModelConfig.num_encoder_layers = 2", "config.ModelConfig.num_decoder_layers = 1",
                         "REMAT_POLICY = 'minimal'"])
    try:
        model = gin.query_parameter("%MODEL").scoped_configurable_fn()
    finally:
        gin.clear_config()
    assert model.config.dtype == "bfloat16" and model.config.remat_policy == "minimal"
    result = train_class(tmp_path / "bf16", partitioning.Partitioner((-1, 1, 1)), total_steps=2, model=model)
    assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(result.state.params)} == {np.dtype("float32")}
    losses = trainer_testing.loss_trajectory(tmp_path / "bf16")
    assert all(np.isfinite(v) for v in losses.values())
