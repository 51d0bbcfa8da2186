"""`class-jax convert` end to end: conversions, the --verify JSON line and exit codes, one-line errors."""

import json
import sys

import pytest

import checkpoint_fixtures as fx
from class_jax import cli
from class_jax.checkpoints.hf import mapping
from class_jax.checkpoints import params_io
from class_jax.checkpoints.hf.verify import TOLERANCE

DIFF_KEYS = ("max_abs_diff_encoder", "max_abs_diff_logits", "max_abs_diff_loss")


@pytest.fixture(name="hf_dir")
def fixture_hf_dir(tmp_path):
    directory = tmp_path / "hf"
    fx.save_hf(fx.build_hf_model(fx.MT5_GATED), directory)
    return directory


def _json_line(stdout: str) -> dict:
    lines = stdout.strip().splitlines()
    assert len(lines) == 1, stdout
    return json.loads(lines[0])


def test_hf_to_class_jax_with_verify(hf_dir, tmp_path, capsys):
    code = cli.main(["convert", "--from", "hf", "--input", str(hf_dir), "--output", str(tmp_path / "out"),
                     "--verify"])
    captured = capsys.readouterr()
    result = _json_line(captured.out)
    print(captured.out)
    assert code == 0 and result["ok"] is True
    assert all(0 <= result[key] <= TOLERANCE for key in DIFF_KEYS)
    assert "NEW PARAMETER encoder/retriever/query_proj/kernel" in captured.err
    params, config = params_io.load_params(tmp_path / "out")
    assert config.num_heads == fx.MT5_GATED["num_heads"] and "token_embedder" in params


def test_verify_catches_a_corrupted_tensor(hf_dir, tmp_path, capsys, monkeypatch):
    faithful = mapping.hf_to_params

    def corrupting(*args, **kwargs):
        flat = faithful(*args, **kwargs)
        flat["encoder/layers_1/mlp/wo/kernel"] = flat["encoder/layers_1/mlp/wo/kernel"] + 0.01
        return flat

    monkeypatch.setattr(mapping, "hf_to_params", corrupting)
    code = cli.main(["convert", "--from", "hf", "--input", str(hf_dir), "--output", str(tmp_path / "out"),
                     "--verify"])
    result = _json_line(capsys.readouterr().out)
    assert code == 1 and result["ok"] is False
    assert result["max_abs_diff_encoder"] > TOLERANCE and result["max_abs_diff_logits"] > TOLERANCE


def test_t5x_to_hf_with_verify(shared_dir, tmp_path, capsys):
    vocab = tmp_path / "vocab.model"
    vocab.write_bytes(b"sentencepiece model bytes")
    code = cli.main(["convert", "--from", "t5x", "--input", str(shared_dir / "fixtures/t5x/test_t5_tiny.checkpoint_0"),
                     "--output", str(tmp_path / "hf"), "--to", "hf", "--num_heads", "4", "--spiece_model", str(vocab),
                     "--verify"])
    result = _json_line(capsys.readouterr().out)
    assert code == 0 and result["ok"] is True
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert (config["num_heads"], config["d_kv"], config["feed_forward_proj"]) == (4, 3, "gated-gelu")
    assert (tmp_path / "hf" / "spiece.model").read_bytes() == b"sentencepiece model bytes"


def test_class_jax_to_hf_keeps_the_source_config(hf_dir, tmp_path, capsys):
    fx.make_class_checkpoint(hf_dir, block=0, n_passages=3)
    assert cli.main(["convert", "--from", "hf", "--input", str(hf_dir), "--output", str(tmp_path / "ours")]) == 0
    assert cli.main(["convert", "--from", "class_jax", "--input", str(tmp_path / "ours"), "--output",
                     str(tmp_path / "back"), "--to", "hf"]) == 0
    config = json.loads((tmp_path / "back" / "config.json").read_text())
    assert (config["retriever_layer"], config["n_passages"]) == (0, 3)
    assert capsys.readouterr().out == ""  # without --verify nothing goes to stdout


def test_overrides_are_applied(hf_dir, tmp_path):
    assert cli.main(["convert", "--from", "hf", "--input", str(hf_dir), "--output", str(tmp_path / "out"),
                     "--override", "dropout_rate=0.0", "--override", "retrieval_mode=token",
                     "--override", "retriever_layer=1"]) == 0
    _, config = params_io.load_params(tmp_path / "out")
    assert (config.dropout_rate, config.retrieval_mode, config.retriever_layer) == (0.0, "token", 1)


@pytest.mark.parametrize("extra, message", [
    (["--num_heads", "4"], "--num_heads=4 but"),
    (["--override", "no_such_field=1"], "expected FIELD=VALUE"),
    (["--override", "retrieval_head=7", "--override", "retrieval_mode=token"], "retrieval_head=7 outside"),
])
def test_bad_flags_give_one_line_errors(hf_dir, tmp_path, capsys, extra, message):
    code = cli.main(["convert", "--from", "hf", "--input", str(hf_dir), "--output", str(tmp_path / "out"), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("class-jax convert: error: ") and message in err[-1]
    assert not (tmp_path / "out").exists()


def test_bad_input_gives_a_one_line_error(tmp_path, capsys):
    code = cli.main(["convert", "--from", "hf", "--input", str(tmp_path / "absent"), "--output",
                     str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no config.json" in err[0]


def test_existing_output_needs_overwrite(hf_dir, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    code = cli.main(["convert", "--from", "hf", "--input", str(hf_dir), "--output", str(tmp_path / "out")])
    assert code == 2 and "already exists" in capsys.readouterr().err
    assert cli.main(["convert", "--from", "hf", "--input", str(hf_dir), "--output", str(tmp_path / "out"),
                     "--overwrite"]) == 0
    assert params_io.is_checkpoint_dir(tmp_path / "out")


def test_verify_without_transformers_says_what_to_install(hf_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # makes `import transformers` raise ImportError
    code = cli.main(["convert", "--from", "hf", "--input", str(hf_dir), "--output", str(tmp_path / "out"),
                     "--verify"])
    err = capsys.readouterr().err
    assert code == 2 and "needs torch and transformers" in err
    assert not (tmp_path / "out").exists()  # refused before doing any work

