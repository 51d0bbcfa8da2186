"""`class-jax build-fid`: questions + a dense index (or BM25) -> FiD example directories the tasks read."""

import numpy as np
import pytest

from class_jax import cli
from class_jax.checkpoints import params_io
from class_jax.models.class_model import CLASSModel
from class_jax.tasks import text_inputs
from class_jax.tasks import fid_files
from class_jax.tasks import query_sources
import retrieval_fixtures as fx


def _build_fid(corpus_root, queries, out, *extra) -> list[str]:
    return ["build-fid", "--kind", "finetune", "--corpus", str(corpus_root), "--questions", str(queries),
            "--out", str(out), "--k", "3", *extra]


def test_dense_index_retrieval_attaches_the_brute_force_top_k(checkpoint, corpus, vocabulary, tmp_path):
    corpus_root, rows = corpus
    index = tmp_path / "index"
    assert cli.main(["index", "--checkpoint", str(checkpoint), "--corpus", str(corpus_root), "--out", str(index),
                     "--batch_size", "8", "--dtype", "float32", "--no_progress"]) == 0
    queries = tmp_path / "queries.jsonl"
    fx.write_queries(queries)
    out = tmp_path / "fid"
    assert cli.main(_build_fid(corpus_root, queries, out, "--retriever", "index", "--checkpoint", str(checkpoint),
                               "--index", str(index), "--passage_langs", "en", "ja")) == 0

    examples = list(fid_files.read_fid_examples(str(out)))
    gold = query_sources.load_xor_questions(queries)
    assert [e.id for e in examples] == [q.id for q in gold]
    assert all(e.target == q.answers[0] for e, q in zip(examples, gold))

    # Expected: every passage encoded alone, ranked by dot product with the question's vector.
    params, config = params_io.load_params(checkpoint)
    model = CLASSModel(config)
    passages = [r for lang in ("en", "ja") for r in rows[lang]]
    passage_vectors = np.concatenate([
        np.asarray(model.encode_for_retrieval(
            params, text_inputs.passage_batch(vocabulary, [p["title"]], [p["text"]]), False)["vectors"])
        for p in passages])
    query_vectors = np.asarray(model.encode_for_retrieval(
        params, text_inputs.query_batch(vocabulary, [q.question for q in gold]), True)["vectors"])
    _, expected_rows = fx.brute_force_top_k(query_vectors, passage_vectors, 3)
    for example, row_ids in zip(examples, expected_rows):
        assert [p.id for p in example.passages] == [passages[i]["id"] for i in row_ids]


def test_bm25_questions_and_eval_files_leave_targets_empty(corpus, tmp_path):
    corpus_root, rows = corpus
    queries = tmp_path / "queries.jsonl"
    fx.write_queries(queries)
    out = tmp_path / "fid_eval"
    assert cli.main(_build_fid(corpus_root, queries, out, "--eval")) == 0
    examples = list(fid_files.read_fid_examples(str(out)))
    english = {r["id"] for r in rows["en"]}
    assert examples and all(e.target == "" and len(e.passages) == 3 for e in examples)
    assert all(p.id in english for e in examples for p in e.passages)


@pytest.mark.parametrize("kind, extra", [("questions", ("--eval",)), ("xor_full_eval", ())])
def test_old_kind_name_and_eval_kinds_build_eval_files(corpus, tmp_path, kind, extra):
    queries = tmp_path / "queries.jsonl"
    fx.write_queries(queries)
    out = tmp_path / "fid_eval"
    argv = _build_fid(corpus[0], queries, out, "--kind", kind, *extra)
    if kind == "questions":
        with pytest.warns(FutureWarning, match="--kind 'questions' is a deprecated name; write 'finetune' instead"):
            assert cli.main(argv) == 0
    else:
        assert cli.main(argv) == 0
    examples = list(fid_files.read_fid_examples(str(out)))
    assert examples and all(e.target == "" for e in examples)


@pytest.mark.parametrize("extra, message", [
    (("--kind", "nq"), "unknown --kind 'nq'; expected one of: clr_pt, mlqa_pt, finetune, xor_full_eval, mkqa_eval, "
                       "xor_retrieve_eval"),
    (("--kind", "mlqa_pt"), "--kind mlqa_pt needs --mined DIR and --langs"),
    (("--retriever", "index"), "needs --checkpoint and --index"),
    (("--passage_langs", "ja"), "English passages only"),
    (("--k", "0"), "--k 0"),
])
def test_bad_flags_are_one_line_errors(corpus, tmp_path, capsys, extra, message):
    queries = tmp_path / "queries.jsonl"
    fx.write_queries(queries)
    capsys.readouterr()
    assert cli.main(_build_fid(corpus[0], queries, tmp_path / "out", *extra)) == 2
    assert message in capsys.readouterr().err
