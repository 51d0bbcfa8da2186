"""`class-jax ask` end to end on a tiny index: the answer and passages it prints, and one-line errors."""

import json

import jax
import numpy as np
import pytest

from class_jax import cli
from class_jax.models.class_model import CLASSModel
from class_jax.tasks import text_inputs
from class_jax.retrieval.index_reader import IndexReader
import retrieval_fixtures as fx
import xla_cache

QUESTION = "king river paris song"
K = 3


@pytest.fixture(scope="module", autouse=True)
def _compilation_cache(tmp_path_factory):
    """Each `ask` compiles the same reader program again (a new jit per command run); compile it once."""
    with xla_cache.persistent_compilation_cache(tmp_path_factory.mktemp("ask_xla_cache")):
        yield


@pytest.fixture(scope="module")
def index(checkpoint, corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("ask") / "index"
    assert cli.main(["index", "--checkpoint", str(checkpoint), "--corpus", str(corpus[0]), "--out", str(out),
                     "--batch_size", "8", "--dtype", "float32", "--no_progress"]) == 0
    return out


def _ask(checkpoint, index, *extra: str, question: str = QUESTION) -> list[str]:
    return ["ask", "--checkpoint", str(checkpoint), "--index", str(index), "--k", str(K), "--log_level", "ERROR",
            *extra, question]


def _expected(corpus, question: str, num_beams: int = 1) -> tuple[list[str], np.ndarray, str]:
    """Top-k ids and scores by brute force with the checkpoint's model, and the answer its reader decodes."""
    model, params = fx.init_params(fx.TINY, seed=0)
    vocabulary = fx.vocabulary()
    records = [r for lang in corpus[1].values() for r in lang]
    encode = jax.jit(model.encode_for_retrieval, static_argnums=2)
    passages = text_inputs.passage_batch(vocabulary, [r["title"] for r in records], [r["text"] for r in records])
    query = text_inputs.query_batch(vocabulary, [question])
    scores, rows = fx.brute_force_top_k(np.asarray(encode(params, query, True)["vectors"]),
                                        np.asarray(encode(params, passages, False)["vectors"]), K)
    reader = CLASSModel(fx.TINY, max_decode_length=50, num_beams=num_beams, eos_id=vocabulary.eos_id)
    batch = {"query_tokens": query, "passage_tokens": passages[rows[0]][None]}
    tokens = np.asarray(jax.jit(reader.predict_batch)(params, batch))[0]
    ends = np.flatnonzero(tokens == vocabulary.eos_id)
    answer = vocabulary.decode([int(t) for t in (tokens[:ends[0]] if len(ends) else tokens) if t > 0])
    return [records[r]["id"] for r in rows[0]], scores[0], answer


def test_ask_prints_the_answer_and_the_retrieved_passages(checkpoint, corpus, index, capsys):
    capsys.readouterr()
    assert cli.main(_ask(checkpoint, index)) == 0
    lines = capsys.readouterr().out.splitlines()
    ids, scores, answer = _expected(corpus, QUESTION)
    assert lines[0] == f"question: {QUESTION}"
    assert lines[1] == f"answer:   {answer}"
    assert lines[2] == f"top {K} passages:"
    titles = {r["id"]: r["title"] for lang in corpus[1].values() for r in lang}
    for rank, (line, passage_id) in enumerate(zip(lines[3:], ids), start=1):
        assert line.split()[0] == f"{rank}." and f"[{passage_id}]" in line and titles[passage_id] in line
    assert len(lines) == 3 + K


def _ask_json(capsys, checkpoint, corpus, index, question: str, num_beams: int) -> None:
    capsys.readouterr()
    assert cli.main(_ask(checkpoint, index, "--json", "--num_beams", str(num_beams), question=question)) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1
    record = json.loads(out[0])
    ids, scores, answer = _expected(corpus, question, num_beams=num_beams)
    assert record["question"] == question and record["answer"] == answer
    assert [p["id"] for p in record["passages"]] == ids
    np.testing.assert_allclose([p["score"] for p in record["passages"]], scores, rtol=1e-5)
    assert [p["rank"] for p in record["passages"]] == list(range(1, K + 1))


def test_ask_json_in_another_language(checkpoint, corpus, index, capsys):
    # Japanese: mostly unknown to the tiny test vocabulary, still encoded, retrieved for and answered.
    _ask_json(capsys, checkpoint, corpus, index, "東京の川はどこ", num_beams=1)


@pytest.mark.slow
def test_ask_with_beam_search(checkpoint, corpus, index, capsys):
    _ask_json(capsys, checkpoint, corpus, index, "queen war peace", num_beams=3)


def _error(capsys, argv) -> str:
    capsys.readouterr()
    assert cli.main(argv) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("class-jax ")]
    assert len(lines) == 1, lines
    return lines[0]


def test_ask_bad_input_gives_one_line_errors(checkpoint, other_checkpoint, index, tmp_path, capsys):
    assert "not a complete index" in _error(capsys, _ask(checkpoint, tmp_path / "missing"))
    assert "not a class_jax checkpoint" in _error(capsys, _ask(tmp_path / "nothing", index))
    mismatch = _error(capsys, _ask(other_checkpoint, index))
    assert "different model" in mismatch and str(other_checkpoint) in mismatch
    assert "question is empty" in _error(capsys, _ask(checkpoint, index, question="  "))
    rows = IndexReader(index).num_rows
    assert f"holds only {rows} passages" in _error(capsys, _ask(checkpoint, index, "--k", str(rows + 1)))
    assert "--num_beams 0" in _error(capsys, _ask(checkpoint, index, "--num_beams", "0"))
