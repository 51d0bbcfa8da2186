"""T5X imports: the real single-file fixture, and a tensorstore/zarr-backed checkpoint written here."""

import ml_dtypes
import numpy as np
import pytest
import tensorstore as ts
from flax import serialization

from class_jax.checkpoints import param_layout, t5x as t5x_io
from class_jax.checkpoints.hf import verify
from class_jax.runtime.errors import UserError

FIXTURE = "fixtures/t5x/test_t5_tiny.checkpoint_0"


def _fixture_target(shared_dir) -> dict[str, np.ndarray]:
    state = serialization.msgpack_restore((shared_dir / FIXTURE).read_bytes())
    return param_layout.flatten(state["optimizer"]["target"])


def test_fixture_maps_completely_and_runs(shared_dir):
    target = _fixture_target(shared_dir)
    imported = t5x_io.load_t5x_checkpoint(shared_dir / FIXTURE)
    config = imported.config
    assert (config.vocab_size, config.emb_dim, config.num_heads, config.head_dim, config.mlp_dim) == (
        32128, 8, 4, 3, 16)
    assert (config.num_encoder_layers, config.num_decoder_layers, config.logits_via_embedding) == (2, 2, False)

    expected = set(param_layout.expected_shapes(config))
    created = {entry["param"] for entry in imported.report.initialised}
    # Every tensor of the checkpoint is used, and nothing the model needs is missing from it but the retriever.
    assert set(target) - expected == set()
    assert expected - set(target) == set(param_layout.RETRIEVER_PARAMS)
    assert created == set(param_layout.RETRIEVER_PARAMS)
    assert set(imported.params) == expected
    for path, array in target.items():
        np.testing.assert_array_equal(imported.params[path], array, err_msg=path)
    assert "NEW PARAMETER encoder/retriever/query_proj/kernel" in imported.report.summary()

    batch = verify.random_batch(config.vocab_size, input_length=12, target_length=5)
    outputs = verify.jax_outputs(param_layout.unflatten(imported.params), config, batch)
    for name, value in outputs.items():
        assert np.all(np.isfinite(value)), name
    assert np.std(outputs["logits"]) > 0


def _write_tensorstore_checkpoint(directory, target: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Writes a T5X checkpoint_N directory: matrices as zarr arrays referenced from the msgpack, vectors inline.

    The embedding is stored as bfloat16 (as T5X does for bf16 params) and one reference uses the gcs driver
    name a checkpoint copied from a bucket keeps. Returns the values a reader must produce (float32).
    """
    directory.mkdir(parents=True)
    tree, produced = {}, {}
    for path, array in target.items():
        node = tree
        *parents, leaf = path.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        if array.ndim == 1:
            node[leaf] = array
            produced[path] = array
            continue
        name = "target." + path.replace("/", ".")
        stored = array.astype(ml_dtypes.bfloat16) if path == "token_embedder/embedding" else array
        dtype = "bfloat16" if stored.dtype == ml_dtypes.bfloat16 else "float32"
        metadata = {"compressor": {"id": "gzip"}, "shape": list(array.shape), "chunks": [max(1, array.shape[0] // 2),
                                                                                        array.shape[1]]}
        store = ts.open({"driver": "zarr", "dtype": dtype, "kvstore": {"driver": "file", "path": str(directory / name)},
                         "metadata": metadata}, create=True).result()
        store.write(stored).result()
        kvstore = {"driver": "file", "path": name}
        if path == "decoder/logits_dense/kernel":
            kvstore = {"driver": "gcs", "bucket": "t5x-dummy-bucket", "path": name}
        node[leaf] = {"driver": "zarr", "dtype": dtype, "kvstore": kvstore, "metadata": metadata}
        produced[path] = stored.astype(np.float32)
    state = {"version": 3, "optimizer": {"target": tree, "state": {"step": np.int32(100)}}}
    (directory / "checkpoint").write_bytes(serialization.msgpack_serialize(state))
    return produced


def test_tensorstore_layout_imports(shared_dir, tmp_path):
    target = _fixture_target(shared_dir)
    checkpoint = tmp_path / "model" / "checkpoint_100"
    produced = _write_tensorstore_checkpoint(checkpoint, target)
    (tmp_path / "model" / "config.gin").write_text(
        "NUM_HEADS = 4\nnetwork.T5Config.num_heads = %NUM_HEADS\n"
        "network.T5Config.mlp_activations = ('gelu', 'linear')  # T5.1.1\nnetwork.T5Config.dropout_rate = 0.0\n")
    imported = t5x_io.load_t5x_checkpoint(checkpoint)
    assert imported.config.num_heads == 4 and imported.config.dropout_rate == 0.0
    assert imported.report.source_dtypes == {"float32": len(target) - 1, "bfloat16": 1}
    assert set(imported.params) - set(param_layout.RETRIEVER_PARAMS) == set(target)
    for path, array in produced.items():
        np.testing.assert_array_equal(imported.params[path], array, err_msg=path)
    # The bfloat16 copy differs from the float32 original, so the comparison above saw the stored bytes.
    assert not np.array_equal(produced["token_embedder/embedding"], target["token_embedder/embedding"])


def test_tensorstore_missing_array_is_named(shared_dir, tmp_path):
    checkpoint = tmp_path / "checkpoint_1"
    _write_tensorstore_checkpoint(checkpoint, _fixture_target(shared_dir))
    for entry in (checkpoint / "target.encoder.layers_1.mlp.wo.kernel").iterdir():
        entry.unlink()
    (checkpoint / "target.encoder.layers_1.mlp.wo.kernel").rmdir()
    with pytest.raises(UserError, match="encoder/layers_1/mlp/wo/kernel"):
        t5x_io.load_t5x_checkpoint(checkpoint)


def test_heads_contradicting_the_position_table_are_refused(shared_dir):
    with pytest.raises(UserError, match="num_heads=2 but encoder/relpos_bias/rel_embedding has 4 heads"):
        t5x_io.load_t5x_checkpoint(shared_dir / FIXTURE, num_heads=2)


def test_shape_contradicting_override_is_refused(shared_dir):
    with pytest.raises(UserError, match="mlp_activations"):
        t5x_io.load_t5x_checkpoint(shared_dir / FIXTURE, overrides={"mlp_activations": ("relu",)})


def test_not_a_train_state_is_refused(tmp_path):
    (tmp_path / "checkpoint").write_bytes(serialization.msgpack_serialize({"params": {"x": np.ones(2)}}))
    with pytest.raises(UserError, match="optimizer/target"):
        t5x_io.load_t5x_checkpoint(tmp_path)
    (tmp_path / "garbage").write_bytes(b"\xc1 not msgpack")
    with pytest.raises(UserError, match="not a msgpack"):
        t5x_io.load_t5x_checkpoint(tmp_path / "garbage")
