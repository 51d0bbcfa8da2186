"""`class-jax index` and `class-jax retrieve` end to end, and their one-line errors for bad input."""

import json

import jax
import numpy as np
import pytest

from class_jax import cli
from class_jax.corpus import corpus_io
from class_jax.evaluation import files, xor_retrieve
from class_jax.tasks import text_inputs
from class_jax.retrieval.index_reader import IndexReader
import retrieval_fixtures as fx


def _index(checkpoint, corpus_root, out, *extra) -> list[str]:
    return ["index", "--checkpoint", str(checkpoint), "--corpus", str(corpus_root), "--out", str(out),
            "--batch_size", "8", "--shard_size", "6", "--no_progress", *extra]


def _retrieve(checkpoint, index, queries, out, *extra) -> list[str]:
    return ["retrieve", "--checkpoint", str(checkpoint), "--index", str(index), "--queries", str(queries),
            "--out", str(out), "--k", "4", *extra]


def _error(capsys, argv) -> str:
    """Runs a command that must fail; returns its one error line."""
    capsys.readouterr()
    assert cli.main(argv) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("class-jax ")]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture(scope="module")
def built(checkpoint, corpus, tmp_path_factory):
    """A float32 index of the shared corpus, and a query file."""
    folder = tmp_path_factory.mktemp("commands")
    assert cli.main(_index(checkpoint, corpus[0], folder / "index", "--dtype", "float32")) == 0
    queries = folder / "queries.jsonl"
    fx.write_queries(queries)
    return folder / "index", queries


def test_retrieve_writes_what_the_xor_retrieve_scorer_accepts(built, checkpoint, corpus, tmp_path, capsys):
    index, queries = built
    details = {}
    for backend in ("faiss", "device"):
        out = tmp_path / f"pred_{backend}.json"
        assert cli.main(_retrieve(checkpoint, index, queries, out, "--backend", backend)) == 0
        predictions = files.load_retrieval_predictions(out)
        gold = files.load_gold_questions(queries)
        result = xor_retrieve.score_xor_retrieve(gold, predictions)
        assert result.coverage.matched == len(gold) == len(predictions) == 7
        assert all(budget.macro is not None for budget in result.budgets)
        assert [p.lang for p in predictions] == [q.lang for q in gold] == ["ko", "ja"] * 3 + ["ko"]

        records = [json.loads(line) for line in (tmp_path / f"pred_{backend}.details.jsonl").read_text().splitlines()]
        texts = {r["id"]: r["text"] for lang in corpus[1].values() for r in lang}
        for prediction, record in zip(predictions, records):
            assert prediction.id == record["id"] and len(record["passages"]) == 4
            assert list(prediction.passages) == [texts[p["id"]] for p in record["passages"]]
            scores = [p["score"] for p in record["passages"]]
            assert scores == sorted(scores, reverse=True)
        details[backend] = records
        assert cli.main(["eval-xor-retrieve", "--data_file", str(queries), "--pred_file", str(out)]) == 0

    # Same passages from both backends; scores are the model's own query . passage dot products.
    for faiss_record, device_record in zip(details["faiss"], details["device"]):
        assert [p["id"] for p in faiss_record["passages"]] == [p["id"] for p in device_record["passages"]]
        np.testing.assert_allclose([p["score"] for p in faiss_record["passages"]],
                                   [p["score"] for p in device_record["passages"]], rtol=1e-5)
    model, params = fx.init_params(fx.TINY, seed=0)
    reader = IndexReader(index)
    ids = reader.ids()
    row_of = {ids[row]: row for row in range(reader.num_rows)}
    first = details["device"][0]
    query = text_inputs.query_batch(fx.vocabulary(), [first["question"]])
    vector = np.asarray(jax.jit(model.encode_for_retrieval, static_argnums=2)(params, query, True)["vectors"][0])
    for passage in first["passages"]:
        expected = float(reader.read_rows("vectors", row_of[passage["id"]], row_of[passage["id"]] + 1)[0] @ vector)
        assert passage["score"] == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_index_refuses_missing_and_empty_corpora(checkpoint, tmp_path, capsys):
    message = _error(capsys, _index(checkpoint, tmp_path / "nowhere", tmp_path / "index"))
    assert "nowhere: corpus directory does not exist" in message
    empty = tmp_path / "empty"
    corpus_io.write_json(empty / "en" / "manifest.json", {"counts": {}})
    corpus_io.write_jsonl(empty / "en" / "passages" / "passages-00000.jsonl.gz", [])
    assert "no passages in en (empty corpus)" in _error(capsys, _index(checkpoint, empty, tmp_path / "index"))
    message = _error(capsys, _index(checkpoint, empty, tmp_path / "index", "--langs", "de"))
    assert "'de' was not (completely) ingested" in message


@pytest.mark.parametrize("bad_line, problem", [
    ('{"id": "en:9:0", "title": "T"}', "line 3: missing field 'text'"),
    ('{"id": "en:9:0", "title": "T", "text": ', "line 3: not valid JSON"),
    ('{"id": "en:9:0", "title": 7, "text": "x"}', "line 3: field 'title' must be a string"),
])
def test_a_malformed_passage_line_is_named_by_file_and_line(checkpoint, tmp_path, capsys, bad_line, problem):
    root = tmp_path / "corpus"
    fx.write_corpus(root, {"en": [4]})
    path = root / "en" / "passages" / "passages-00000.jsonl.gz"
    lines = corpus_io.open_text(path).read().splitlines()
    with corpus_io.atomic_write(path) as out:
        out.write("\n".join(lines[:2] + [bad_line] + lines[2:]) + "\n")
    message = _error(capsys, _index(checkpoint, root, tmp_path / "index"))
    assert f"{path}: {problem}" in message


def test_retrieve_refuses_another_model_an_unfinished_index_and_bad_queries(built, other_checkpoint, checkpoint,
                                                                          tmp_path, capsys):
    index, queries = built
    message = _error(capsys, _retrieve(other_checkpoint, index, queries, tmp_path / "p.json"))
    assert f"{index} was built with the model at {checkpoint}" in message and "different model" in message
    message = _error(capsys, _index(other_checkpoint, IndexReader(index).spec.corpus_root, index))
    assert "different model" in message and "refusing to mix" in message

    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "index_spec.json").write_text((index / "index_spec.json").read_text())
    message = _error(capsys, _retrieve(checkpoint, unfinished, queries, tmp_path / "p.json"))
    assert "not a complete index" in message and "resume" in message

    bad_queries = tmp_path / "bad.jsonl"
    bad_queries.write_text('{"id": "a", "question": "x", "lang": "ja"}\n{"id": "b", "lang": "ja"}\n')
    message = _error(capsys, _retrieve(checkpoint, index, bad_queries, tmp_path / "p.json"))
    assert f"{bad_queries}: line 2: missing field 'question'" in message
    message = _error(capsys, _retrieve(checkpoint, index, queries, tmp_path / "p.json", "--k", "1000"))
    assert "--k 1000" in message
    assert not (tmp_path / "p.json").exists()

