"""HF -> ours -> HF and ours -> Orbax -> ours reproduce every tensor bit for bit."""

import json

import jax
import numpy as np
import pytest
from safetensors.numpy import load_file

import checkpoint_fixtures as fx
from class_jax.checkpoints.hf import export, reader
from class_jax.checkpoints import param_layout, params_io
from class_jax.checkpoints.import_report import ImportReport
from class_jax.runtime.errors import UserError


def _hf_numpy(directory) -> dict[str, np.ndarray]:
    return load_file(directory / "model.safetensors")


@pytest.mark.parametrize("spec", [fx.MT5_GATED, fx.T5_V10_RELU_TIED], ids=["mt5-untied", "t5v1.0-tied"])
def test_class_checkpoint_hf_round_trip_is_exact(tmp_path, spec):
    source = tmp_path / "source"
    fx.save_hf(fx.build_hf_model(spec), source)
    fx.make_class_checkpoint(source, block=1, n_passages=9)
    imported = reader.load_hf_checkpoint(source)
    exported = export.export_hf(tmp_path / "exported", param_layout.unflatten(imported.params), imported.config,
                                source_hf_config=imported.report.source_hf_config)
    before, after = _hf_numpy(source), _hf_numpy(exported)
    assert set(after) == set(before)
    for name, tensor in before.items():
        assert after[name].dtype == tensor.dtype and np.array_equal(after[name], tensor), name
    config = json.loads((exported / "config.json").read_text())
    assert config["architectures"] == ["RRForConditionalGeneration"]
    assert (config["retriever_layer"], config["n_passages"]) == (1, 9)
    assert config["model_type"] == spec["kind"]
    assert reader.load_hf_checkpoint(exported).config == imported.config


def test_plain_hf_round_trip_adds_only_the_reported_retriever(tmp_path):
    source = tmp_path / "source"
    fx.save_hf(fx.build_hf_model(fx.MT5_GATED), source)
    imported = reader.load_hf_checkpoint(source)
    exported = export.export_hf(tmp_path / "exported", param_layout.unflatten(imported.params), imported.config,
                                source_hf_config=imported.report.source_hf_config)
    before, after = _hf_numpy(source), _hf_numpy(exported)
    for name, tensor in before.items():
        assert np.array_equal(after[name], tensor), name
    block = imported.config.retriever_layer_index
    assert set(after) - set(before) == {f"encoder.block.{block}.layer.0.SelfAttention.{name}.weight"
                                        for name in ("query_proj", "passage_proj", "layer_norm")}
    assert len(imported.report.initialised) == 3


def test_reatt_hf_round_trip_keeps_its_keys(tmp_path):
    source = tmp_path / "source"
    fx.save_hf(fx.build_hf_model(fx.T5_GATED_SILU_ONE_HEAD), source)
    fx.make_reatt_checkpoint(source, layer=0, head=0)
    imported = reader.load_hf_checkpoint(source)
    exported = export.export_hf(tmp_path / "exported", param_layout.unflatten(imported.params), imported.config,
                                source_hf_config=imported.report.source_hf_config)
    before, after = _hf_numpy(source), _hf_numpy(exported)
    assert set(after) == set(before) and all(np.array_equal(after[n], t) for n, t in before.items())
    config = json.loads((exported / "config.json").read_text())
    assert (config["retrieval_layer"], config["retrieval_head"], config["distillation_tau"]) == (0, 0, 0.001)
    assert config["feed_forward_proj"] == "gated-silu"


def test_orbax_round_trip_is_exact(tmp_path):
    source = tmp_path / "source"
    fx.save_hf(fx.build_hf_model(fx.MT5_GATED), source)
    (source / "spiece.model").write_bytes(b"sentencepiece bytes")
    imported = reader.load_hf_checkpoint(source)
    assert imported.spiece_model == source / "spiece.model"
    params = param_layout.unflatten(imported.params)
    written = params_io.save_params(tmp_path / "ours", params, imported.config, report=imported.report,
                                    spiece_model=imported.spiece_model)
    assert sorted(p.name for p in written.iterdir()) == ["import_report.json", "model_config.json", "params",
                                                       "spiece.model"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left behind
    restored, config = params_io.load_params(written)
    assert config == imported.config
    flat = param_layout.flatten(restored)
    assert set(flat) == set(imported.params)
    for path, array in imported.params.items():
        assert flat[path].dtype == np.float32 and np.array_equal(flat[path], array), path
    report = ImportReport.read(written)
    assert report.initialised == imported.report.initialised and report.source_format == "hf"
    assert (written / "spiece.model").read_bytes() == b"sentencepiece bytes"


def test_save_params_refuses_to_clobber_and_overwrites_on_request(tmp_path):
    source = tmp_path / "source"
    fx.save_hf(fx.build_hf_model(fx.T5_GATED_SILU_ONE_HEAD), source)
    imported = reader.load_hf_checkpoint(source)
    params = param_layout.unflatten(imported.params)
    params_io.save_params(tmp_path / "ours", params, imported.config)
    with pytest.raises(UserError, match="already exists"):
        params_io.save_params(tmp_path / "ours", params, imported.config)
    changed = jax.tree_util.tree_map(lambda a: a * 2, params)
    params_io.save_params(tmp_path / "ours", changed, imported.config, overwrite=True)
    restored, _ = params_io.load_params(tmp_path / "ours")
    np.testing.assert_array_equal(restored["token_embedder"]["embedding"], changed["token_embedder"]["embedding"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ours", "source"]


def test_load_params_restores_into_a_sharded_target(tmp_path):
    source = tmp_path / "source"
    fx.save_hf(fx.build_hf_model(fx.T5_GATED_SILU_ONE_HEAD), source)
    imported = reader.load_hf_checkpoint(source)
    params_io.save_params(tmp_path / "ours", param_layout.unflatten(imported.params), imported.config)
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    target = param_layout.unflatten({path: jax.ShapeDtypeStruct(a.shape, np.float32, sharding=replicated)
                                     for path, a in imported.params.items()})
    restored, _ = params_io.load_params(tmp_path / "ours", target=target)
    kernel = restored["decoder"]["logits_dense"]["kernel"]
    assert isinstance(kernel, jax.Array) and kernel.sharding == replicated
    np.testing.assert_array_equal(np.asarray(kernel), imported.params["decoder/logits_dense/kernel"])

    wrong = dict(param_layout.flatten(target))
    wrong["decoder/logits_dense/kernel"] = jax.ShapeDtypeStruct((10, 54), np.float32, sharding=replicated)
    with pytest.raises(UserError, match=r"decoder/logits_dense/kernel \(10, 54\) \(expected \(10, 53\)\)"):
        params_io.load_params(tmp_path / "ours", target=param_layout.unflatten(wrong))


def test_saving_params_that_do_not_fit_the_config_is_refused(tmp_path):
    source = tmp_path / "source"
    fx.save_hf(fx.build_hf_model(fx.T5_GATED_SILU_ONE_HEAD), source)
    imported = reader.load_hf_checkpoint(source)
    flat = dict(imported.params)
    del flat["decoder/decoder_norm/scale"]
    with pytest.raises(UserError, match="missing 1 parameter.*decoder/decoder_norm/scale"):
        params_io.save_params(tmp_path / "ours", param_layout.unflatten(flat), imported.config)
    assert not (tmp_path / "ours").exists()
