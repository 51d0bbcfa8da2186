"""The stage-1 teacher is read from any of its formats, and every bad teacher is a one-line error, never BM25."""

import json
import pathlib
import sys

import flax.linen as nn
import jax
import numpy as np
import pytest

from class_jax.checkpoints import params_io
from class_jax.models.class_model import CLASSModel
from class_jax.models.config import ModelConfig
from class_jax.runtime import partitioning
from class_jax.runtime.errors import UserError
from class_jax.trainer import teacher_checkpoint

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "checkpoints"))
import checkpoint_fixtures as fx  # pylint: disable=wrong-import-position


@pytest.fixture(name="partitioner", scope="module")
def fixture_partitioner():
    return partitioning.Partitioner((1, 1, 1), devices=jax.devices()[:1])


def _reatt(directory: pathlib.Path, vocab: bool = True, extra_rows: int = 28) -> pathlib.Path:
    pieces = fx.write_sentencepiece(directory / params_io.SPIECE_FILE)
    fx.save_hf(fx.build_hf_model(dict(fx.T5_V10_RELU_TIED, vocab_size=pieces + extra_rows), seed=2), directory)
    fx.make_reatt_checkpoint(directory, layer=1, head=2)
    if not vocab:
        (directory / params_io.SPIECE_FILE).unlink()
    return directory


def _load(directory: pathlib.Path, partitioner, model_dir: pathlib.Path, resuming: bool = False, **kwargs):
    model_dir.mkdir(parents=True, exist_ok=True)
    return teacher_checkpoint.load_teacher(teacher_checkpoint.Teacher(checkpoint=str(directory), **kwargs),
                                           partitioner, model_dir, resuming)


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_reatt_and_release_names_give_the_same_frozen_token_teacher(tmp_path, partitioner):
    reatt = _reatt(tmp_path / "reatt")
    loaded = _load(reatt, partitioner, tmp_path / "run")
    assert loaded.model.config.retrieval_mode == "token" and loaded.model.config.retrieval_head == 2
    record = json.loads((tmp_path / "run" / teacher_checkpoint.RECORD_FILE).read_text())
    assert record == {"checkpoint": str(reatt), "fingerprint": loaded.fingerprint}

    release = _reatt(tmp_path / "release_names")
    config = fx.edit_config(release, retrieval_layer=None, retrieval_head=None, retriever_layer=1, retriever_head=2)
    assert "retrieval_layer" not in config
    renamed = _load(release, partitioner, tmp_path / "run2")
    assert renamed.model.config == loaded.model.config
    for ours, theirs in zip(jax.tree_util.tree_leaves(renamed.params), jax.tree_util.tree_leaves(loaded.params)):
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))


def test_a_pooled_params_directory_is_a_teacher_and_an_unknown_directory_is_not(tmp_path, partitioner):
    pieces = fx.write_sentencepiece(tmp_path / "vocab" / params_io.SPIECE_FILE)
    config = ModelConfig(vocab_size=pieces + 10, emb_dim=8, num_heads=2, head_dim=4, mlp_dim=16,
                         num_encoder_layers=2, num_decoder_layers=1, relative_attention_num_buckets=4,
                         dropout_rate=0.0)
    model = CLASSModel(config)
    params = jax.device_get(model.get_initial_variables(jax.random.key(0), CLASSModel.init_shapes())["params"])
    params = jax.tree_util.tree_map(np.asarray, nn.unbox(params))
    params_io.save_params(tmp_path / "pooled", params, config, spiece_model=tmp_path / "vocab" / params_io.SPIECE_FILE)
    loaded = _load(tmp_path / "pooled", partitioner, tmp_path / "run")
    assert loaded.model.config.retrieval_mode == "pooled"

    with pytest.raises(UserError) as error:
        _load(tmp_path / "vocab", partitioner, tmp_path / "run3")  # neither params, HF nor a run
    assert "neither a params directory nor an HF checkpoint" in _one_line(error)


@pytest.mark.parametrize("problem, match", [
    ("no_vocab", "no vocabulary"),
    ("wrong_vocab", "pieces but its embedding has"),
    ("no_retrieval_layer", "needs a retrieval layer and head"),
    ("head_without_layer", "retriever_head but no retriever_layer"),
    ("reatt_layer_without_head", "retrieval_layer but no retrieval_head"),
    ("missing", "no such directory"),
])
def test_bad_teachers_are_one_line_errors(tmp_path, partitioner, problem, match):
    directory = tmp_path / "teacher"
    if problem == "no_vocab":
        _reatt(directory, vocab=False)
    elif problem == "wrong_vocab":
        _reatt(directory, extra_rows=5000)  # e.g. mT5's 250k rows with T5's 32k pieces
    elif problem == "no_retrieval_layer":
        _reatt(directory)
        fx.edit_config(directory, retrieval_layer=None, retrieval_head=None)
    elif problem == "head_without_layer":
        _reatt(directory)
        fx.edit_config(directory, retrieval_layer=None, retrieval_head=None, retriever_head=2)
    elif problem == "reatt_layer_without_head":
        _reatt(directory)
        fx.edit_config(directory, retrieval_head=None)
    with pytest.raises(UserError, match=match) as error:
        _load(directory, partitioner, tmp_path / "run")
    _one_line(error)
    assert not (tmp_path / "run" / teacher_checkpoint.RECORD_FILE).exists()


def test_a_resumed_run_refuses_another_teacher(tmp_path, partitioner):
    first, second = _reatt(tmp_path / "first"), _reatt(tmp_path / "second")
    _load(first, partitioner, tmp_path / "run")
    _load(first, partitioner, tmp_path / "run", resuming=True)
    with pytest.raises(UserError, match="was trained with the teacher") as error:
        _load(second, partitioner, tmp_path / "run", resuming=True)
    assert str(first) in _one_line(error)
