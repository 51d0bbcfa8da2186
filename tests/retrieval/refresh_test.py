"""The asynchronous passage update inside training: rounds, the data switch, exclusion, resumption, pruning."""

import json
import pathlib
import shutil

import jax
import numpy as np
import pytest

from class_jax.runtime.errors import UserError
from class_jax.models.class_model import CLASSModel
from class_jax.fid import refresh, refresh_queries, refresh_rounds
from class_jax.tasks import text_inputs
from class_jax.tasks import fid_files, fid_tasks
from class_jax.trainer import checkpointer, data, hooks, optimizers, train
from class_jax.runtime import partitioning
import retrieval_fixtures as fx
import xla_cache

REFRESH_CORPUS = {"en": [9, 8], "ja": [7]}
NUM_QUERIES = 12
BATCH = 8
EVERY = 2
TOTAL_STEPS = 6
K = 3
LENGTHS = {"query_tokens": 16, "passage_tokens": (K, 24), "targets": 6}


@pytest.fixture(scope="module", autouse=True)
def _compilation_cache(tmp_path_factory):
    """Shares compiled programs between the several training runs of this module (they differ only in data)."""
    with xla_cache.persistent_compilation_cache(tmp_path_factory.mktemp("refresh_xla_cache")):
        yield


def _query_records(passages: list[dict]) -> list[fid_files.FiDExample]:
    """MLQA-PT-like queries: each asks with the first words of its source passage (so retrieval finds it)."""
    queries = []
    for number, passage in enumerate(passages[:NUM_QUERIES]):
        words = passage["text"].split()
        answer = passage["title"].split()[1]
        queries.append(fid_files.FiDExample(
            id=f"q{number}", lang=passage["lang"], question=" ".join(words[:6]), answers=(answer,), target=answer,
            source_passage_id=passage["id"],
            passages=tuple(fid_files.FiDPassage(id=p["id"], title=p["title"], text=p["text"])
                           for p in passages[NUM_QUERIES:NUM_QUERIES + K])))
    return queries


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A corpus, the stage's initial FiD files (the queries) and the initial SeqIO task over them."""
    root = tmp_path_factory.mktemp("refresh_setup")
    written = fx.write_corpus(root / "corpus", REFRESH_CORPUS, seed=5)
    passages = [p for lang in REFRESH_CORPUS for p in written[lang]]
    # Queries from both languages, so the stream mixes them.
    queries = _query_records(passages[::2])
    fid_files.write_fid_examples(queries, str(root / "initial"), 2, num_passages=K)
    fid_tasks.register_fid_task("refresh_test_initial", str(root / "initial"), "mlqa_pt", vocab_path=fx.VOCAB_PATH)
    return {"root": root, "corpus": root / "corpus", "initial": root / "initial", "passages": passages,
            "queries": queries}


class RecordingRefresh:
    """The refresh hook, remembering the parameters it refreshed with and the calls it got."""

    def __init__(self, function: refresh.PassageRefresh):
        self.function = function
        self.params: dict[int, dict] = {}
        self.calls: list[tuple[int, bool]] = []

    def __call__(self, ctx: hooks.HookContext):
        self.calls.append((ctx.step, ctx.resuming))
        if not ctx.resuming:
            self.params[ctx.step] = jax.device_get(ctx.params)
        return self.function(ctx)


def _refresh_function(setup, **overrides) -> refresh.PassageRefresh:
    options = dict(corpus_dir=str(setup["corpus"]), query_fid_dirs=str(setup["initial"]), batch_size=BATCH,
                   task_feature_lengths=LENGTHS, every_steps=EVERY, kind="mlqa_pt", vocab_path=fx.VOCAB_PATH,
                   seed=7, encode_batch_size=8, index_dtype="float32", shard_size=10, num_shards=3, keep_rounds=2,
                   tensorboard=False, progress=False)
    options.update(overrides)
    return refresh.PassageRefresh(**options)


def _train(setup, model_dir: pathlib.Path, total_steps: int, **refresh_overrides):
    recorder = RecordingRefresh(_refresh_function(setup, **refresh_overrides))
    result = train.train(
        model=CLASSModel(fx.TINY, max_decode_length=LENGTHS["targets"]),
        train_dataset_cfg=data.DatasetConfig("refresh_test_initial", LENGTHS, "train", batch_size=BATCH, seed=0,
                                             module="class_jax.tasks"),
        partitioner=partitioning.Partitioner(), model_dir=str(model_dir), total_steps=total_steps,
        optimizer=optimizers.adamw(optimizers.learning_rate_schedule(1e-2, 100, warmup_steps=1)),
        checkpoint_cfg=checkpointer.CheckpointConfig(save_every_steps=2, keep=10, async_save=False),
        log_period=1, tensorboard=False, peak_flops_per_device=1e9,
        hooks=[hooks.PeriodicHook(recorder, every_steps=EVERY, run_at_start=True, name="passage_refresh")])
    return result, recorder


@pytest.fixture(scope="module")
def uninterrupted(setup, tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("refresh_run") / "run"
    result, recorder = _train(setup, model_dir, TOTAL_STEPS)
    return model_dir, result, recorder


def _round(model_dir: pathlib.Path, step: int) -> tuple[dict, list[fid_files.FiDExample]]:
    directory = refresh_rounds.round_dir(model_dir, step)
    return fid_files.read_manifest(str(directory)), list(fid_files.read_fid_examples(str(directory)))


def _brute_force(params, queries: list[fid_files.FiDExample], passages: list[dict], k: int):
    """Top-k passage ids and scores per query by the model's own encoders, source passage dropped."""
    model = CLASSModel(fx.TINY)
    vocabulary = fx.vocabulary()
    encode = jax.jit(model.encode_for_retrieval, static_argnums=2)
    passage_tokens = text_inputs.passage_batch(vocabulary, [p["title"] for p in passages],
                                               [p["text"] for p in passages], LENGTHS["passage_tokens"][1])
    query_tokens = text_inputs.query_batch(vocabulary, [q.question for q in queries], LENGTHS["query_tokens"])
    p_vectors = np.asarray(encode(params, passage_tokens, False)["vectors"], np.float64)
    q_vectors = np.asarray(encode(params, query_tokens, True)["vectors"], np.float64)
    results = []
    for query, scores in zip(queries, q_vectors @ p_vectors.T):
        order = np.lexsort((np.arange(len(passages)), -scores))
        kept = [row for row in order if passages[row]["id"] != query.source_passage_id][:k]
        results.append(([passages[row]["id"] for row in kept], scores[kept]))
    return results


# ------------------------------------------------------------------------------------------------ unit tests
def test_query_stream_epochs_are_seeded_permutations(setup):
    stream = refresh_queries.QueryStream(setup["queries"], seed=7)
    first, second = stream.epoch_order(0), stream.epoch_order(1)
    assert sorted(first) == sorted(second) == list(range(NUM_QUERIES))
    assert list(first) != list(second)  # each epoch reshuffles
    again = refresh_queries.QueryStream(setup["queries"], seed=7)
    np.testing.assert_array_equal(again.epoch_order(1), second)
    assert list(refresh_queries.QueryStream(setup["queries"], seed=8).epoch_order(0)) != list(first)
    block = stream.block(start_step=1, num_steps=2, batch_size=BATCH)  # stream positions 8..23: epochs 0 and 1
    expected = [setup["queries"][i] for i in list(first[8:]) + list(second[:BATCH * 2 - (NUM_QUERIES - 8)])]
    assert [q.id for q in block.queries] == [q.id for q in expected]
    assert all(q.passages == () for q in block.queries)


def test_load_queries_reads_every_language_in_written_order(setup, tmp_path):
    queries = setup["queries"]
    by_lang = {"en": queries[:7], "ja": queries[7:]}
    for lang, records in by_lang.items():  # 3 shards: uneven shard lengths
        fid_files.write_fid_examples(records, str(tmp_path / lang), 3, num_passages=K)
    loaded = refresh_queries.load_queries(str(tmp_path / "{lang}"), ["ja", "en"])
    expected = [fid_files.FiDExample(**{**q.__dict__, "passages": ()}) for q in by_lang["ja"] + by_lang["en"]]
    assert loaded == expected
    with pytest.raises(UserError, match="no languages"):
        refresh_queries.load_queries(str(tmp_path / "{lang}"))


def test_rounds_to_keep_protects_what_checkpoints_resume_into():
    steps = [0, 2, 4, 6, 8]
    assert refresh_rounds.rounds_to_keep(steps, 2, []) == {6, 8}
    # A checkpoint at step 5 resumes into the round of step 4; one at step 1 into the round of step 0.
    assert refresh_rounds.rounds_to_keep(steps, 1, [1, 5, 8]) == {0, 4, 8}


# ------------------------------------------------------------------------------------------------ end to end
def test_refresh_runs_inside_training_with_the_current_parameters(setup, uninterrupted):
    model_dir, result, recorder = uninterrupted
    assert result.step == TOTAL_STEPS
    assert recorder.calls == [(0, False), (2, False), (4, False)]
    stream = refresh_queries.QueryStream(setup["queries"], seed=7)
    fingerprints = set()
    for step in (0, 2, 4):
        manifest, examples = _round(model_dir, step)
        metadata = manifest["metadata"]
        assert metadata["step"] == step and metadata["num_steps"] == EVERY and metadata["batch_size"] == BATCH
        fingerprints.add(metadata["retriever_fingerprint"])
        assert not (refresh_rounds.round_dir(model_dir, step) / "index").exists()
        # The round holds exactly the queries steps [step, step + EVERY) consume, in order.
        block = stream.block(step, EVERY, BATCH)
        assert [e.id for e in examples] == [q.id for q in block.queries]
        expected = _brute_force(recorder.params[step], list(block.queries), setup["passages"], K)
        for example, (ids, scores) in zip(examples, expected):
            assert example.source_passage_id not in [p.id for p in example.passages]
            assert len(example.passages) == K
            np.testing.assert_allclose([p.score for p in example.passages], scores, rtol=1e-4, atol=1e-5)
            assert [p.id for p in example.passages] == ids
    # Every round was made with other parameters (training changed them between refreshes).
    assert len(fingerprints) == 3
    records = [json.loads(line) for line in (model_dir / "metrics.jsonl").read_text().splitlines()]
    refresh_records = {r["step"]: r for r in records if "refresh/seconds" in r}
    assert sorted(refresh_records) == [0, 2, 4]
    assert all(r["refresh/seconds"] > 0 and r["refresh/reused"] == 0 for r in refresh_records.values())
    # Queries are asked with their source passage's words: the exclusion had something to exclude.
    assert sum(r["refresh/source_passages_dropped"] for r in refresh_records.values()) > 0
    assert {r["step"] for r in records if "loss" in r} == set(range(1, TOTAL_STEPS + 1))


def test_round_source_feeds_each_host_its_rows_of_the_block_in_order(setup, uninterrupted):
    model_dir, _, _ = uninterrupted
    _, examples = _round(model_dir, 2)
    source = refresh_rounds.RoundDataSource(
        refresh_rounds.round_dir(model_dir, 2), name="refresh_test_round", kind="mlqa_pt", global_batch_size=BATCH,
        task_feature_lengths=LENGTHS, feature_converter=data.feature_converter_for(CLASSModel(fx.TINY)),
        vocab_path=fx.VOCAB_PATH)
    vocabulary = fx.vocabulary()
    second_host = partitioning.HostBatchShard(index=1, num_shards=2, local_batch_size=BATCH // 2,
                                              global_batch_size=BATCH)
    batches = list(source.make_iterator(second_host, skip_batches=1))
    assert len(batches) == 1  # the round covers EVERY steps; skipping one leaves the last
    expected = examples[BATCH + BATCH // 2:2 * BATCH]
    np.testing.assert_array_equal(
        batches[0]["query_tokens"],
        text_inputs.query_batch(vocabulary, [e.question for e in expected], LENGTHS["query_tokens"]))
    for row, example in enumerate(expected):
        passages = text_inputs.passage_batch(vocabulary, [p.title for p in example.passages],
                                             [p.text for p in example.passages], LENGTHS["passage_tokens"][1])
        np.testing.assert_array_equal(batches[0]["passage_tokens"][row], passages)


def _params_close(a, b) -> None:
    jax.tree_util.tree_map(lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-6),
                           a, b)


def test_resume_between_refreshes_redoes_a_half_written_round(setup, uninterrupted, tmp_path):
    reference_dir, reference, _ = uninterrupted
    model_dir = tmp_path / "run"
    first, _ = _train(setup, model_dir, 3)
    assert first.step == 3
    # A refresh at step 4 killed half-way: shards without a manifest and a started scratch index.
    half = refresh_rounds.round_dir(model_dir, 4)
    (half / "index").mkdir(parents=True)
    (half / "index" / "index_spec.json").write_text("{}")
    for shard in refresh_rounds.round_dir(reference_dir, 4).glob("fid-*"):
        shutil.copy(shard, half / shard.name)

    resumed, recorder = _train(setup, model_dir, TOTAL_STEPS)
    # Step 3 is no refresh step: the hook re-establishes the round of step 2; at step 4 it refreshes.
    assert recorder.calls == [(3, True), (4, False)]
    _params_close(resumed.state.params, reference.state.params)
    for step in (2, 4):
        assert _round(model_dir, step)[1] == _round(reference_dir, step)[1]


@pytest.mark.slow
def test_restart_at_a_refresh_step_reuses_the_complete_round(setup, uninterrupted, tmp_path):
    reference_dir, reference, _ = uninterrupted
    model_dir = tmp_path / "run"
    _train(setup, model_dir, 5)
    # Killed after refreshing at step 4 and before the checkpoint of step 5 was written.
    shutil.rmtree(model_dir / "checkpoints" / "5")
    resumed, recorder = _train(setup, model_dir, TOTAL_STEPS)
    assert recorder.calls == [(4, False)]
    _params_close(resumed.state.params, reference.state.params)
    records = [json.loads(line) for line in (model_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["refresh/reused"] for r in records if "refresh/reused" in r] == [0, 0, 0, 1]


def _context(model_dir: pathlib.Path, step: int) -> hooks.HookContext:
    return hooks.HookContext(step=step, params=None, model=CLASSModel(fx.TINY),
                             partitioner=partitioning.Partitioner(), model_dir=model_dir, resuming=True)


def test_resumption_refuses_missing_rounds_and_other_settings(setup, uninterrupted, tmp_path):
    reference_dir, _, _ = uninterrupted
    switch = _refresh_function(setup)(_context(reference_dir, 5))
    assert switch.start_step == 4 and switch.source.fid_dir == refresh_rounds.round_dir(reference_dir, 4)
    with pytest.raises(UserError, match="seed"):
        _refresh_function(setup, seed=8)(_context(reference_dir, 5))

    model_dir = tmp_path / "run"
    shutil.copytree(reference_dir / "refresh", model_dir / "refresh")
    shutil.rmtree(refresh_rounds.round_dir(model_dir, 4))
    with pytest.raises(UserError, match="round of step 4 is missing"):
        _refresh_function(setup)(_context(model_dir, 5))
    shutil.rmtree(model_dir / "refresh")
    with pytest.raises(UserError, match="no complete refresh round"):
        _refresh_function(setup)(_context(model_dir, 1))
    # Refreshing only from step EVERY on: before it, the stage's initial data is in force.
    assert _refresh_function(setup, run_at_start=False)(_context(model_dir, 1)) is None


def test_pruning_keeps_the_newest_rounds_and_those_checkpoints_resume_into(uninterrupted, tmp_path):
    reference_dir, _, _ = uninterrupted
    model_dir = tmp_path / "run"
    shutil.copytree(reference_dir / "refresh", model_dir / "refresh")
    (refresh_rounds.round_dir(model_dir, 1) / "index").mkdir(parents=True)  # a half-written old round
    (model_dir / "checkpoints" / "3").mkdir(parents=True)
    removed = refresh_rounds.prune_rounds(model_dir, keep_last=1, current_step=4)
    assert removed == [0, 1]
    assert refresh_rounds.round_steps(model_dir) == [2, 4]


def _bound_refresh_hooks(stage: str, *bindings: str) -> list:
    """The REFRESH_HOOKS a demo stage file builds (with test values for what it requires)."""
    import gin  # pylint: disable=import-outside-toplevel
    from class_jax.runtime import gin_utils  # pylint: disable=import-outside-toplevel
    gin_utils.parse_gin([stage], [
        "NUM_EMBEDDINGS = 32", f"VOCAB_PATH = '{fx.VOCAB_PATH}'", "MODEL_DIR = '/tmp/run'",
        "MLQA_PT_FID_DIRS = '/data/mlqa_pt/{lang}'", "TRAIN_FID_DIRS = '/data/xor_full'",
        "INITIAL_CHECKPOINT_PATH = '/tmp/stage1'", *bindings])
    try:
        return gin.query_parameter("%REFRESH_HOOKS").scoped_configurable_fn()
    finally:
        gin.clear_config()


@pytest.mark.parametrize("stage, kind", [("demo/mlqa_pt.gin", "mlqa_pt"), ("demo/finetune_xor_full.gin", "finetune")])
def test_gin_stages_bind_the_refresh_hook(stage, kind):
    bound = _bound_refresh_hooks(stage, "REFRESH_CORPUS_DIR = '/data/corpus'")
    assert len(bound) == 1 and bound[0].every_steps == 25 and bound[0].run_at_start
    function = bound[0].fn
    assert isinstance(function, refresh.PassageRefresh)
    assert (function.kind, function.batch_size, function.num_passages, function.passage_length) == (kind, 8, 4, 64)
    assert function.corpus_dir == "/data/corpus" and function.every_steps == 25
    if kind == "mlqa_pt":
        assert function.query_fid_dirs == "/data/mlqa_pt/{lang}"
        assert function.query_languages == ["de", "es", "ja", "ru", "ar", "ko"]
    else:
        assert function.query_fid_dirs == "/data/xor_full" and function.query_languages is None


def test_old_refresh_kind_still_binds_with_a_warning_and_reads_old_rounds():
    with pytest.warns(FutureWarning, match="refresh kind 'anchor_qa' is a deprecated name; write 'mlqa_pt'"):
        bound = _bound_refresh_hooks("demo/mlqa_pt.gin", "REFRESH_CORPUS_DIR = '/data/corpus'",
                                     "REFRESH_KIND = 'anchor_qa'")
    assert bound[0].fn.kind == "mlqa_pt"
    # Rounds written before the rename recorded the old kind: they still match (and are resumed into / reused).
    old_round = {"kind": "anchor_qa", "seed": 7}
    assert refresh._current_names(old_round) == {"kind": "mlqa_pt", "seed": 7}  # pylint: disable=protected-access
    assert refresh._current_names({"kind": "other"})["kind"] == "other"  # pylint: disable=protected-access
    with pytest.raises(ValueError, match="unknown refresh kind 'clr_pt'; expected one of: mlqa_pt, finetune"):
        _bound_refresh_hooks("demo/mlqa_pt.gin", "REFRESH_CORPUS_DIR = '/data/corpus'", "REFRESH_KIND = 'clr_pt'")


def test_refresh_is_off_with_a_warning_without_a_corpus(caplog):
    with caplog.at_level("WARNING"):
        assert _bound_refresh_hooks("demo/mlqa_pt.gin") == []
    assert "Passage refresh is OFF" in caplog.text
