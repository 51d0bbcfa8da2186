"""Exact top-k search: both backends equal brute force, sharding does not change results, ties go to lower rows."""

import jax
import numpy as np
import pytest

from class_jax.retrieval import search
from class_jax.retrieval.index_reader import IdTable
from class_jax.runtime.partitioning import Partitioner
import retrieval_fixtures as fx


def _mesh(shape, num_devices=8):
    return Partitioner(mesh_shape=shape, devices=jax.devices()[:num_devices]).mesh


def _reader(arrays):
    return lambda start, stop: {name: value[start:stop] for name, value in arrays.items()}


def _integer_data(num_rows=203, dim=8, num_queries=19, seed=0):
    """Small integers: every summation order gives the same float32 score, and ties are frequent."""
    rng = np.random.RandomState(seed)
    return (rng.randint(-2, 3, (num_rows, dim)).astype(np.float32),
            rng.randint(-2, 3, (num_queries, dim)).astype(np.float32))


def _searchers(vectors, shape=(-1, 1, 1), num_devices=8, **device_options):
    read = _reader({"vectors": vectors})
    return {"device": search.DeviceSearcher(read, len(vectors), _mesh(shape, num_devices), **device_options),
            "faiss": search.FaissSearcher(read, len(vectors), vectors.shape[1])}


@pytest.mark.parametrize("shape", [(-1, 1, 1), (2, 2, 2)])
def test_both_backends_equal_brute_force_exactly_with_ties(shape):
    vectors, queries = _integer_data()
    full_scores, _ = fx.brute_force_top_k(queries, vectors, len(vectors))
    # The data really ties at the k-th place, where faiss's choice among tied rows would show.
    assert (full_scores[:, 4] == full_scores[:, 5]).sum() >= 5 and (full_scores[:, 36] == full_scores[:, 37]).sum() >= 5
    searchers = _searchers(vectors, shape, query_batch_size=8, chunk_rows=10)
    for k in (1, 5, 37, len(vectors)):
        expected_scores, expected_rows = fx.brute_force_top_k(queries, vectors, k)
        for name, searcher in searchers.items():
            scores, rows = searcher.search_rows(queries, k)
            assert scores.dtype == np.float32 and rows.dtype == np.int64
            np.testing.assert_array_equal(rows, expected_rows, err_msg=f"{name} k={k}")
            np.testing.assert_array_equal(scores, expected_scores, err_msg=f"{name} k={k}")


@pytest.mark.parametrize("num_columns,k", [(4096, 100), (1024, 37), (1000, 10), (64, 5), (100, 99), (7, 3)])
def test_grouped_top_k_equals_lax_top_k_with_ties_and_infinities(num_columns, k):
    rng = np.random.RandomState(num_columns)
    group_size = search.top_k_group_size(num_columns, k)
    assert num_columns % group_size == 0 and (group_size == 1 or num_columns // group_size > k)
    for scores in (rng.randint(-3, 4, (9, num_columns)).astype(np.float32),
                   rng.randn(9, num_columns).astype(np.float32)):
        scores[0, :num_columns // 2] = -np.inf
        scores[1] = 0.0  # every column ties
        expected_values, expected_positions = jax.lax.top_k(scores, k)
        values, positions = jax.jit(search.grouped_top_k, static_argnums=(1, 2))(scores, k, group_size)
        np.testing.assert_array_equal(positions, expected_positions)
        np.testing.assert_array_equal(values, expected_values)
    if group_size > 1:
        with pytest.raises(ValueError, match="more than"):
            search.grouped_top_k(scores, num_columns // group_size, group_size)


def test_device_search_with_grouped_chunk_top_k_equals_brute_force_with_ties():
    vectors, queries = _integer_data(num_rows=4000, num_queries=11)
    searcher = search.DeviceSearcher(_reader({"vectors": vectors}), len(vectors), _mesh((1, 1, 1), 1),
                                     chunk_rows=1024)
    for k in (1, 37, 100):
        assert search.top_k_group_size(searcher.chunk_rows, k) > 1
        expected_scores, expected_rows = fx.brute_force_top_k(queries, vectors, k)
        scores, rows = searcher.search_rows(queries, k)
        np.testing.assert_array_equal(rows, expected_rows, err_msg=f"k={k}")
        np.testing.assert_array_equal(scores, expected_scores, err_msg=f"k={k}")


def test_float16_index_equals_brute_force_on_the_stored_values():
    vectors, queries = _integer_data(num_rows=150)
    halves = vectors.astype(np.float16) / 4  # exact in float16
    expected_scores, expected_rows = fx.brute_force_top_k(queries, halves.astype(np.float32), 12)
    for name, searcher in _searchers(halves, chunk_rows=16).items():
        scores, rows = searcher.search_rows(queries, 12)
        np.testing.assert_array_equal(rows, expected_rows, err_msg=name)
        np.testing.assert_array_equal(scores, expected_scores, err_msg=name)


def test_sharded_device_search_equals_one_device_on_random_vectors():
    rng = np.random.RandomState(1)
    vectors = rng.randn(1000, 24).astype(np.float32)
    queries = rng.randn(33, 24).astype(np.float32)
    read = _reader({"vectors": vectors})
    one = search.DeviceSearcher(read, 1000, _mesh((1, 1, 1), 1), query_batch_size=16)
    eight = search.DeviceSearcher(read, 1000, _mesh((2, 4, 1)), query_batch_size=16, chunk_rows=40)
    scores_one, rows_one = one.search_rows(queries, 20)
    scores_eight, rows_eight = eight.search_rows(queries, 20)
    np.testing.assert_array_equal(rows_eight, rows_one)
    # The chunks' widths differ (1000 rows against 32), and with them the GEMM kernels' summation order.
    np.testing.assert_allclose(scores_eight, scores_one, rtol=1e-6)
    expected_scores, expected_rows = fx.brute_force_top_k(queries, vectors, 20)
    np.testing.assert_array_equal(rows_one, expected_rows)
    np.testing.assert_allclose(scores_one, expected_scores, rtol=1e-5)
    faiss_scores, faiss_rows = search.FaissSearcher(read, 1000, 24).search_rows(queries, 20)
    np.testing.assert_array_equal(faiss_rows, expected_rows)
    np.testing.assert_allclose(faiss_scores, expected_scores, rtol=1e-5)


def test_ties_go_to_lower_rows_across_devices_and_at_the_kth_place():
    vectors = np.zeros((64, 4), np.float32)
    vectors[:, 0] = 1.0
    vectors[[5, 40, 63], 0] = 2.0  # three winners spread over devices; the other 61 rows all tie
    queries = np.array([[1.0, 0, 0, 0], [-1.0, 0, 0, 0]], np.float32)
    for name, searcher in _searchers(vectors, chunk_rows=4).items():
        _, rows = searcher.search_rows(queries, 6)
        np.testing.assert_array_equal(rows[0], [5, 40, 63, 0, 1, 2], err_msg=name)
        np.testing.assert_array_equal(rows[1], [0, 1, 2, 3, 4, 6], err_msg=name)


def test_search_returns_passage_ids_and_checks_k():
    vectors, queries = _integer_data(num_rows=12)
    ids = IdTable([("".join(f"p{i}\n" for i in range(5))).encode(), ("".join(f"p{i}\n" for i in range(5, 12))).encode()])
    read = _reader({"vectors": vectors})
    for searcher in (search.DeviceSearcher(read, 12, _mesh((-1, 1, 1)), ids=ids),
                     search.FaissSearcher(read, 12, vectors.shape[1], ids=ids)):
        scores, passage_ids = searcher.search(queries[:3], 4)
        _, rows = searcher.search_rows(queries[:3], 4)
        assert passage_ids.tolist() == [[f"p{r}" for r in row] for row in rows]
        for bad_k in (0, 13):
            with pytest.raises(ValueError, match="between 1 and"):
                searcher.search_rows(queries, bad_k)
    assert search.FaissSearcher(read, 12, vectors.shape[1]).ids is None


def test_token_mode_device_search_equals_model_scores():
    config = fx.TINY_TOKEN.__class__(**{**fx.TINY_TOKEN.__dict__, "token_score_position_bias": True,
                                        "token_score_length_norm": True})
    model, params = fx.init_params(config, seed=4)
    rng = np.random.RandomState(5)
    passages = rng.randint(3, 26, (37, 9)).astype(np.int32)
    passages[::3, 6:] = 0  # some shorter passages
    queries = rng.randint(3, 26, (5, 6)).astype(np.int32)
    queries[0, 4:] = 0
    encode = jax.jit(model.encode_for_retrieval, static_argnums=2)
    passage_side = encode(params, passages, False)
    query_side = encode(params, queries, True)
    expected = np.asarray(jax.jit(model.score, static_argnums=3)(params, query_side, passage_side, 6))
    order = np.lexsort((np.broadcast_to(np.arange(37), expected.shape), -expected), axis=-1)[:, :7]

    bias = np.asarray(model.module.apply({"params": params}, np.arange(6), 6 + np.arange(9),
                                         method="relative_bias")[config.retrieval_head])
    rows = {"tokens": np.asarray(passage_side["tokens"]), "lengths": (passages > 0).sum(-1).astype(np.int32)}
    searcher = search.DeviceSearcher(_reader(rows), 37, _mesh((-1, 1, 1)), chunk_rows=3,
                                     scorer=search.maxsim_block_scorer(bias, length_norm=True))
    scores, found = searcher.search_rows({k: np.asarray(v) for k, v in query_side.items()}, 7)
    np.testing.assert_array_equal(found, order)
    np.testing.assert_allclose(scores, np.take_along_axis(expected, order, -1), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="pooled vectors only"):
        search.FaissSearcher(_reader(rows), 37, 4)


def test_auto_backend_is_faiss_for_pooled_vectors_on_one_cpu_process_and_device_otherwise():
    assert jax.default_backend() == "cpu" and jax.process_count() == 1
    assert search.resolve_backend("auto") == "faiss"
    assert search.resolve_backend("auto", token_mode=True) == "device"
    assert [search.resolve_backend(name) for name in ("device", "faiss")] == ["device", "faiss"]
    vectors, _ = _integer_data(num_rows=12)
    read = _reader({"vectors": vectors})
    assert isinstance(search.make_searcher("auto", read, 12, vectors.shape[1]), search.FaissSearcher)
    assert isinstance(search.make_searcher("device", read, 12, vectors.shape[1], mesh=_mesh((-1, 1, 1))),
                      search.DeviceSearcher)
    with pytest.raises(ValueError, match="expected 'auto', 'device' or 'faiss'"):
        search.make_searcher("gpu", read, 12, vectors.shape[1])


@pytest.mark.parametrize("rows,chunk_rows,expected", [(100_000, 32768, 25088), (1_000_000, 32768, 32512),
                                                      (4000, 1024, 1000), (26, 10, 9), (5, 10, 5)])
def test_search_chunks_split_the_rows_evenly(rows, chunk_rows, expected):
    vectors = np.zeros((rows, 2), np.float32)
    searcher = search.DeviceSearcher(_reader({"vectors": vectors}), rows, _mesh((1, 1, 1), 1), chunk_rows=chunk_rows)
    assert searcher.chunk_rows == expected
    num_chunks = searcher.rows_per_shard // expected
    assert num_chunks == -(-rows // chunk_rows)  # no more chunks than chunk_rows needs
    assert 0 <= searcher.rows_per_shard - rows < num_chunks * 256


def test_default_chunks_are_large_on_accelerators_for_pooled_vectors():
    assert search.default_chunk_rows("cpu", 256, 768) == 32768
    assert search.default_chunk_rows("gpu", 256, 768) == 262144  # 1 GiB of float32 scores and rows
    assert search.default_chunk_rows("gpu", 32, 768) % 256 == 0
    assert search.default_chunk_rows("tpu", 32, 768) > search.default_chunk_rows("tpu", 256, 768)
    assert search.default_chunk_rows("gpu", 256, None) == 32768  # max-sim scoring
    assert search.default_chunk_rows("gpu", 1 << 20, 768) == 32768  # never below the CPU steps
    vectors = np.zeros((40_000, 2), np.float32)
    searcher = search.DeviceSearcher(_reader({"vectors": vectors}), 40_000, _mesh((1, 1, 1), 1))
    assert searcher.rows_per_shard // searcher.chunk_rows == 2  # this CPU run: 32768-row steps
