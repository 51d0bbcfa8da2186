"""Corpus encoding: the stored vectors are the model's, shards survive a kill, device count does not matter."""

import pathlib

import jax
import numpy as np
import pytest

from class_jax.runtime.errors import UserError
from class_jax.retrieval import index_builder, index_format, loaded_model, retrieve
from class_jax.tasks import text_inputs
from class_jax.retrieval.corpus_source import CorpusSource
from class_jax.retrieval.encoder import RetrievalEncoder
from class_jax.retrieval.index_reader import IndexReader
from class_jax.runtime.partitioning import Partitioner
import retrieval_fixtures as fx

SHARD_SIZE = 5  # 23 passages -> 5 shards, the last one short, several straddling passages files


def _build(checkpoint, corpus_root, out, vocabulary, *, devices=8, dtype="float32", batch_size=8):
    partitioner = Partitioner(devices=jax.devices()[:devices])
    loaded = loaded_model.load_model(str(checkpoint), partitioner, vocabulary)
    encoder = RetrievalEncoder(loaded.model, loaded.params, partitioner, batch_size, dtype=dtype)
    return index_builder.encode_corpus(encoder, vocabulary, CorpusSource.plan(corpus_root), out, loaded.identity,
                                        "vocab-sha", dtype=dtype, shard_size=SHARD_SIZE, progress=False)


def _shard_bytes(index_dir: pathlib.Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((index_dir / index_format.SHARDS_DIR).iterdir())}


@pytest.fixture(scope="module")
def reference_index(checkpoint, corpus, vocabulary, tmp_path_factory):
    """The uninterrupted float32 build on 8 devices."""
    out = tmp_path_factory.mktemp("index") / "reference"
    _build(checkpoint, corpus[0], out, vocabulary)
    return out


def test_vectors_equal_encoding_each_passage_alone(reference_index, checkpoint, corpus, vocabulary):
    model, params = fx.init_params(fx.TINY, seed=0)
    records = [r for lang in ("en", "ja") for r in corpus[1][lang]]  # default languages: sorted
    index = IndexReader(reference_index, verify_checksums=True)
    assert index.num_rows == len(records) == 23 and len(index.shards) == 5
    assert [index.ids()[i] for i in range(23)] == [r["id"] for r in records]
    stored = index.read_rows("vectors", 0, 23)
    assert stored.dtype == np.float32 and stored.shape == (23, fx.TINY.retrieval_dim)
    encode = jax.jit(model.encode_for_retrieval, static_argnums=2)
    for row, record in enumerate(records):
        tokens = text_inputs.passage_batch(vocabulary, [record["title"]], [record["text"]])
        alone = np.asarray(encode(params, tokens, False)["vectors"][0])
        np.testing.assert_allclose(stored[row], alone, rtol=1e-5, atol=1e-6, err_msg=record["id"])
    assert index.spec.model["checkpoint"] == str(checkpoint)


def test_killed_then_resumed_build_is_byte_identical(reference_index, checkpoint, corpus, vocabulary, tmp_path,
                                                      monkeypatch):
    out = tmp_path / "resumed"
    written = []
    real_write_shard = index_format.write_shard

    def write_two_then_die(*args, **kwargs):
        if len(written) == 2:
            raise KeyboardInterrupt  # what a kill between two shards leaves behind
        written.append(args[2])
        return real_write_shard(*args, **kwargs)

    monkeypatch.setattr(index_format, "write_shard", write_two_then_die)
    with pytest.raises(KeyboardInterrupt):
        _build(checkpoint, corpus[0], out, vocabulary)
    assert not (out / index_format.MANIFEST_FILE).exists() and written == [0, 1]
    (out / index_format.SHARDS_DIR / "vectors-00002.npy.123.partial").write_bytes(b"half a file")
    with pytest.raises(UserError, match="did not finish"):
        IndexReader(out)

    monkeypatch.setattr(index_format, "write_shard", real_write_shard)
    redone = []
    monkeypatch.setattr(index_format, "write_shard", lambda *a, **k: redone.append(a[2]) or real_write_shard(*a, **k))
    manifest = _build(checkpoint, corpus[0], out, vocabulary)
    assert redone == [2, 3, 4]  # completed shards were kept
    assert _shard_bytes(out) == _shard_bytes(reference_index)
    assert manifest["shards"] == IndexReader(reference_index).manifest["shards"]

    redone.clear()
    _build(checkpoint, corpus[0], out, vocabulary)  # complete: nothing to do
    assert redone == []


def test_one_device_and_float16_builds_match(reference_index, checkpoint, corpus, vocabulary, tmp_path):
    _build(checkpoint, corpus[0], tmp_path / "one", vocabulary, devices=1, batch_size=3)
    one = IndexReader(tmp_path / "one").read_rows("vectors", 0, 23)
    eight = IndexReader(reference_index).read_rows("vectors", 0, 23)
    # Equal up to float32 rounding: XLA's matmuls of 3 rows on one device and of 1 row on each of 8 devices may
    # round differently in the last bit.
    np.testing.assert_allclose(one, eight, rtol=1e-5, atol=1e-6)

    _build(checkpoint, corpus[0], tmp_path / "half", vocabulary, dtype="float16")
    half = IndexReader(tmp_path / "half")
    assert half.spec.dtype == "float16" and half.array_dtype("vectors") == np.float16
    np.testing.assert_array_equal(half.read_rows("vectors", 0, 23), eight.astype(np.float16))


def test_token_mode_stores_per_token_vectors_and_lengths(token_checkpoint, corpus, vocabulary, tmp_path):
    _build(token_checkpoint, corpus[0], tmp_path / "token", vocabulary)
    index = IndexReader(tmp_path / "token")
    assert index.retrieval_mode == "token" and index.spec.dim == fx.TINY_TOKEN.head_dim
    tokens, lengths = index.read_rows("tokens", 0, 23), index.read_rows("lengths", 0, 23)
    assert tokens.shape == (23, 200, fx.TINY_TOKEN.head_dim) and lengths.dtype == np.int32
    model, params = fx.init_params(fx.TINY_TOKEN, seed=2)
    records = [r for lang in ("en", "ja") for r in corpus[1][lang]]
    batch = text_inputs.passage_batch(vocabulary, [r["title"] for r in records], [r["text"] for r in records])
    encode = jax.jit(model.encode_for_retrieval, static_argnums=2)
    expected = encode(params, batch, False)
    np.testing.assert_array_equal(lengths, (batch > 0).sum(-1))
    valid = np.asarray(expected["valid"])
    np.testing.assert_allclose(tokens[valid], np.asarray(expected["tokens"])[valid], rtol=1e-5, atol=1e-6)
    assert not tokens[~valid].any()  # pads are stored as zeros
    assert lengths.max() == 200  # the long passages were cut at 200 tokens

    # Retrieval over the token index (max-sim on device) ranks passages as the model's own scores do.
    loaded = loaded_model.load_model(str(token_checkpoint), Partitioner(), vocabulary)
    questions = ["river city king", "song film"]
    query_side = retrieve.encode_queries(RetrievalEncoder(loaded.model, loaded.params, Partitioner(), 8),
                                         vocabulary, questions)
    scores, passage_ids = retrieve.make_index_searcher(loaded, index, "device", chunk_rows=4).search(query_side, 6)
    query_tokens = text_inputs.query_batch(vocabulary, questions)
    expected = np.asarray(jax.jit(model.score, static_argnums=3)(params, encode(params, query_tokens, True),
                                                                 expected, 50))
    top = np.argsort(-expected, axis=1, kind="stable")[:, :6]
    assert passage_ids.tolist() == [[records[row]["id"] for row in query_rows] for query_rows in top]
    np.testing.assert_allclose(scores, np.take_along_axis(expected, top, 1), rtol=1e-5, atol=1e-5)
    with pytest.raises(UserError, match="only --backend device"):
        retrieve.make_index_searcher(loaded, index, "faiss")


def test_a_different_model_or_corpus_is_not_mixed_into_a_started_index(reference_index, checkpoint, other_checkpoint,
                                                                       corpus, vocabulary, tmp_path):
    with pytest.raises(UserError, match=r"different model .*refusing to mix"):
        _build(other_checkpoint, corpus[0], reference_index, vocabulary)
    started = tmp_path / "started"
    started.mkdir()
    (started / index_format.SPEC_FILE).write_text((reference_index / index_format.SPEC_FILE).read_text())
    bigger = tmp_path / "bigger"
    fx.write_corpus(bigger, {"en": [10, 8], "ja": [6]})
    with pytest.raises(UserError, match=r"holds a started build .*different corpus"):
        _build(checkpoint, bigger, started, vocabulary)
