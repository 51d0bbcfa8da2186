"""A released-format CLASS checkpoint imports with the packed pair layout and reads as the numpy packed reader does.

The checkpoint is a tiny random mT5 (gated-GELU, untied head) in the HF layout of the release: T5 keys plus
`encoder.block.{B}.layer.0.SelfAttention.{query_proj,passage_proj,layer_norm}.weight`, and `retriever_layer`,
`n_passages`, `architectures: [RRForConditionalGeneration]` in config.json. It goes through `class-jax convert
--from hf`, then through what `class-jax eval` does with a params directory: the gin model (slot layout, as the
model files define it) takes the checkpoint's layout (`param_sources.adopt_checkpoint_settings`), the parameters
are read as eval reads them, and the model's forward pass (the one `score_batch` scores with) gives the logits.
"""

import json
import pathlib
import sys

import jax
import numpy as np
import pytest

import checkpoint_fixtures as fx
from class_jax import cli
from class_jax.models.class_model import CLASSModel
from class_jax.models.config import ModelConfig
from class_jax.trainer import param_sources, train_state
from class_jax.runtime import partitioning

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "models"))
import numpy_class_reference as ref  # pylint: disable=wrong-import-position

BLOCK, K, PASSAGE_LEN = 1, 3, 9
SPEC = dict(fx.MT5_GATED, num_layers=3)  # B = 1 of 3 encoder layers: pair attention in two of them
TOLERANCE = 1e-4  # float32 against float64


@pytest.fixture(name="imported", scope="module")
def fixture_imported(tmp_path_factory):
    root = tmp_path_factory.mktemp("released")
    hf_dir = root / "hf"
    fx.save_hf(fx.build_hf_model(SPEC, seed=3), hf_dir)
    fx.make_class_checkpoint(hf_dir, block=BLOCK, n_passages=K)
    assert json.loads((hf_dir / "config.json").read_text())["architectures"] == ["RRForConditionalGeneration"]
    out = root / "ours"
    assert cli.main(["convert", "--from", "hf", "--input", str(hf_dir), "--output", str(out)]) == 0
    return out


def _batch(query_slot: int, query_lengths, seed: int = 0):
    rng = np.random.default_rng(seed)
    vocab = SPEC["vocab_size"]
    queries = np.zeros((len(query_lengths), query_slot), np.int32)
    passages = np.zeros((len(query_lengths), K, PASSAGE_LEN), np.int32)
    for row, length in enumerate(query_lengths):
        queries[row, :length] = rng.integers(2, vocab, length)
        for slot, passage_len in enumerate((PASSAGE_LEN, 5)):  # the last slot stays empty
            passages[row, slot, :passage_len - 1] = rng.integers(2, vocab, passage_len - 1)
            passages[row, slot, passage_len - 1] = 1
    targets = rng.integers(2, vocab, (len(query_lengths), 4)).astype(np.int32)
    decoder_input = np.concatenate([np.zeros((len(query_lengths), 1), np.int32), targets[:, :-1]], axis=1)
    return {"query_tokens": queries, "passage_tokens": passages, "decoder_input_tokens": decoder_input,
            "decoder_target_tokens": targets, "decoder_loss_weights": np.ones_like(targets, np.float32)}


def _eval_model_and_params(checkpoint: pathlib.Path, gin_config: ModelConfig, batch):
    model = param_sources.adopt_checkpoint_settings(CLASSModel(gin_config), checkpoint)
    partitioner = partitioning.Partitioner((1, 1, 1), devices=jax.devices()[:1])
    shapes = {name: batch[name].shape for name in ("query_tokens", "passage_tokens", "decoder_input_tokens")}
    abstract, _ = train_state.build_param_layout(model, partitioner, shapes)
    params, _ = param_sources.load_params_for_inference(checkpoint, abstract)
    return model, params


def _logits(model: CLASSModel, params, batch) -> np.ndarray:
    """The reader logits of the forward pass `score_batch` scores with."""
    forward = model._forward  # pylint: disable=protected-access
    return np.asarray(jax.jit(lambda p, b: forward(p, b["query_tokens"], b, None)["logits"])(params, batch))


def _numpy_logits(params, config: ModelConfig, batch):
    reader = ref.NumpyCLASS(jax.device_get(params), num_heads=config.num_heads,
                            num_encoder_layers=config.num_encoder_layers,
                            num_decoder_layers=config.num_decoder_layers, retriever_layer=config.retriever_layer,
                            num_buckets=config.relative_attention_num_buckets,
                            max_distance=config.relative_attention_max_distance, eps=config.layer_norm_epsilon)
    out = []
    for query, slots, decoder in zip(batch["query_tokens"], batch["passage_tokens"], batch["decoder_input_tokens"]):
        out.append(reader.logits(query[query > 0], [p[p > 0] for p in slots if np.any(p > 0)], decoder))
    return np.stack(out)


def test_import_records_the_packed_layout_and_query_normalisation(imported):
    recorded = json.loads((imported / "model_config.json").read_text())
    assert recorded["pair_layout"] == "packed" and recorded["normalize_queries"] is True
    assert recorded["retriever_layer"] == BLOCK


@pytest.mark.parametrize("query_slot", [8, 32])
def test_eval_logits_equal_the_numpy_packed_reader(imported, query_slot):
    batch = _batch(query_slot, (1, 4, 6))  # every query shorter than its slot
    gin_config = ModelConfig(vocab_size=SPEC["vocab_size"], emb_dim=SPEC["d_model"], num_heads=SPEC["num_heads"],
                             head_dim=SPEC["d_kv"], mlp_dim=SPEC["d_ff"], num_encoder_layers=SPEC["num_layers"],
                             num_decoder_layers=SPEC["num_decoder_layers"], retriever_layer=BLOCK,
                             relative_attention_num_buckets=SPEC["relative_attention_num_buckets"],
                             relative_attention_max_distance=SPEC["relative_attention_max_distance"],
                             dropout_rate=0.0)
    model, params = _eval_model_and_params(imported, gin_config, batch)
    assert model.config.pair_layout == "packed"
    logits = _logits(model, params, batch)
    expected = _numpy_logits(params, model.config, batch)
    np.testing.assert_allclose(logits, expected, atol=TOLERANCE, rtol=0)

    # The scores eval computes are the log-likelihoods of these logits.
    log_probs = expected - np.log(np.exp(expected - expected.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - expected.max(-1, keepdims=True)
    expected_scores = np.take_along_axis(log_probs, batch["decoder_target_tokens"][..., None], -1)[..., 0].sum(-1)
    np.testing.assert_allclose(np.asarray(model.score_batch(params, batch)), expected_scores, atol=10 * TOLERANCE,
                               rtol=0)

    # The slot layout (what the gin model alone would run) reads these inputs differently.
    slot_model = model.with_config(gin_config)
    slot_logits = _logits(slot_model, params, batch)
    print(f"slot {query_slot}: max |slot - packed| logits = {np.abs(slot_logits - logits).max():.3g}, "
          f"max |packed - numpy| = {np.abs(logits - expected).max():.3g}")
    assert np.abs(slot_logits - logits).max() > 10 * TOLERANCE


def test_eval_of_a_released_checkpoint_tokenises_normalised_queries(imported, tmp_path):
    """`class-jax eval|infer` bind NORMALIZE_QUERIES = True for a checkpoint trained on normalised queries."""
    import argparse  # pylint: disable=import-outside-toplevel
    from class_jax.commands import jobs  # pylint: disable=import-outside-toplevel

    def bindings_for(checkpoint: pathlib.Path, *overrides: str, with_fid_tasks: bool = True) -> list[str]:
        gin_file = tmp_path / "eval.gin"
        gin_file.write_text("\n".join([
            "from __gin__ import dynamic_registration",
            "import class_jax.trainer.evaluate as eval_script",
            "from class_jax.tasks import fid_tasks",
            f"eval_script.evaluate.checkpoint_path = '{checkpoint}'",
            *(["NORMALIZE_QUERIES = False", "fid_tasks.fid_task.normalize_queries = %NORMALIZE_QUERIES"]
              if with_fid_tasks else []),
        ]) + "\n")
        args = argparse.Namespace(gin_file=[str(gin_file)], gin_bindings=[], gin_overrides=list(overrides),
                                  gin_search_paths="")
        return jobs._checkpoint_input_bindings(args, "evaluate")  # pylint: disable=protected-access

    assert bindings_for(imported) == ["NORMALIZE_QUERIES = True"]
    assert bindings_for(imported, "NORMALIZE_QUERIES=False") == []  # the command line wins
    assert bindings_for(imported, with_fid_tasks=False) == []  # nothing tokenises with the macro
    assert bindings_for(tmp_path / "not_a_checkpoint") == []
