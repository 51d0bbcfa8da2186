"""The in-training XOR-Retrieve dev evaluation equals `class-jax index` + `retrieve` + `eval-xor-retrieve`."""

import json

import numpy as np
import pytest

from class_jax import cli
from class_jax.checkpoints import params_io
from class_jax.models.class_model import CLASSModel
from class_jax.retrieval import dev_eval
from class_jax.runtime import partitioning
from class_jax.runtime.errors import UserError
from class_jax.trainer import dev_selection, hooks, train_state
import retrieval_fixtures as fx

K = 10


def _evaluator(dev_file, corpus_root, **overrides) -> dev_eval.XorRetrieveDevEval:
    options = dict(dev_file=str(dev_file), corpus_dir=str(corpus_root), vocab_path=fx.VOCAB_PATH, k=K,
                   encode_batch_size=8, query_batch_size=8, shard_size=6)
    options.update(overrides)
    return dev_eval.XorRetrieveDevEval(**options)


def test_dev_r_at_2kt_matches_the_commands_on_the_same_params(checkpoint, corpus, tmp_path, capsys):
    corpus_root = corpus[0]
    dev_file = tmp_path / "dev.jsonl"
    fx.write_queries(dev_file, count=9)
    partitioner = partitioning.Partitioner()
    model = CLASSModel(fx.TINY)
    abstract, _ = train_state.build_param_layout(model, partitioner, CLASSModel.init_shapes())
    params, _ = params_io.load_params(checkpoint, target=abstract)

    selection = dev_selection.DevSelection([_evaluator(dev_file, corpus_root)], "dev/xor_retrieve/r@2kt",
                                           vocab_path=fx.VOCAB_PATH, tensorboard=False)
    selection.check()
    model_dir = tmp_path / "run"
    selection(hooks.HookContext(step=500, params=params, model=model, partitioner=partitioner, model_dir=model_dir))
    best = dev_selection.read_best(model_dir)
    assert best["step"] == 500
    dev = best["metrics"]
    assert not (model_dir / "dev" / "xor_retrieve" / "index").exists()  # the scratch index is removed

    # best/ is a params directory holding the evaluated parameters: run the commands on it.
    best_dir = dev_selection.best_dir(model_dir)
    stored, _ = params_io.load_params(best_dir)
    original, _ = params_io.load_params(checkpoint)
    for a, b in zip(*(sorted(fx_leaves(tree)) for tree in (stored, original))):
        assert a[0] == b[0]
        np.testing.assert_array_equal(a[1], b[1])
    index, pred = tmp_path / "index", tmp_path / "pred.json"
    assert cli.main(["index", "--checkpoint", str(best_dir), "--corpus", str(corpus_root), "--out", str(index),
                     "--batch_size", "8", "--shard_size", "6", "--no_progress"]) == 0
    assert cli.main(["retrieve", "--checkpoint", str(best_dir), "--index", str(index), "--queries", str(dev_file),
                     "--out", str(pred), "--k", str(K), "--backend", "device", "--batch_size", "8"]) == 0
    capsys.readouterr()
    assert cli.main(["eval-xor-retrieve", "--data_file", str(dev_file), "--pred_file", str(pred)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    for budget in ("2kt", "5kt"):
        assert dev[f"dev/xor_retrieve/r@{budget}"] == summary[f"R@{budget}"]
        assert dev[f"dev/xor_retrieve/corrected_r@{budget}"] == summary[f"corrected_R@{budget}"]
        for lang, recall in summary[f"R@{budget}_per_language"].items():
            assert dev[f"dev/xor_retrieve/r@{budget}_{lang}"] == recall
    assert best["value"] == summary["R@2kt"]
    assert 0.0 < summary["R@5kt"]  # the comparison is not vacuous


def fx_leaves(tree, prefix=""):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from fx_leaves(value, f"{prefix}{key}/")
        else:
            yield f"{prefix}{key}", np.asarray(value)


def test_missing_dev_file_or_corpus_fails_at_check(corpus, tmp_path):
    dev_file = tmp_path / "dev.jsonl"
    with pytest.raises(UserError, match="dev file .* does not exist"):
        _evaluator(dev_file, corpus[0]).check()
    fx.write_queries(dev_file)
    with pytest.raises(UserError, match="corpus directory does not exist"):
        _evaluator(dev_file, tmp_path / "no_corpus").check()
    with pytest.raises(UserError, match="k = 1000 exceeds"):
        _evaluator(dev_file, corpus[0], k=1000).check()
    selection = dev_selection.DevSelection([_evaluator(dev_file, corpus[0])], "xor_retrieve/f1")
    with pytest.raises(UserError, match="not 'f1'"):
        selection.check()
