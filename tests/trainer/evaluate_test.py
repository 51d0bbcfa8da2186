"""SeqIO data, seqio.Evaluator metrics (in training and `evaluate`), JSONL inference, TensorBoard."""

import json

import jax
import numpy as np
import pytest
import seqio
from seqio import test_utils as seqio_test_utils

from class_jax.trainer import data
from class_jax.trainer import evaluate
from class_jax.trainer import infer
from class_jax.runtime import partitioning
import trainer_test_model as tm
import trainer_testing

TASK = "class_jax_trainer_test_copy"
# The synthetic batches' shapes, so the train step is the one other tests compiled (shared XLA cache entry).
LENGTHS = {"inputs": 8, "targets": 6}
WORDS = ["hello", "world", "cat", "dog", "sun", "moon", "red", "blue", "one", "two"]


def exact_match(targets, predictions):
    return {"exact_match": 100.0 * float(np.mean([t == p for t, p in zip(targets, predictions)]))}


def mean_log_likelihood(targets, scores):
    del targets
    return {"mean_log_likelihood": float(np.mean(scores))}


@pytest.fixture(scope="module")
def vocabulary():
    return seqio_test_utils.sentencepiece_vocab()


@pytest.fixture(scope="module")
def copy_task(vocabulary):
    # 20 examples: with batches of 8 the last one is padded (20 = 8 + 8 + 4).
    examples = [{"inputs": f"{a} {b}", "targets": a} for a in WORDS for b in WORDS[:2]]
    features = {name: seqio.Feature(vocabulary) for name in ("inputs", "targets")}
    task = evaluate.register_in_memory_task(TASK, examples, features, [exact_match, mean_log_likelihood])
    yield task
    seqio.TaskRegistry.remove(TASK)


@pytest.fixture(scope="module")
def model(vocabulary):
    config = tm.TinyConfig(dropout_rate=0.1, max_decode_length=LENGTHS["targets"])
    assert config.vocab_size >= vocabulary.vocab_size
    return tm.TinyEncDecModel(config)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, copy_task, model):
    """Two steps on SeqIO batches, evaluated during training; TensorBoard on."""
    del copy_task
    model_dir = tmp_path_factory.mktemp("seqio") / "run"
    partitioner = partitioning.Partitioner((-1, 1, 1))
    result = trainer_testing.train_tiny(
        model_dir, partitioner, total_steps=2, model=model,
        train_dataset_cfg=data.DatasetConfig(TASK, LENGTHS, "train", batch_size=8, seed=3),
        eval_dataset_cfgs=[data.DatasetConfig(TASK, LENGTHS, "validation", batch_size=8, shuffle=False)],
        eval_period=2, tensorboard=True)
    return model_dir, partitioner, result


def test_training_reads_seqio_batches_and_evaluates_with_task_metrics(trained):
    model_dir, _, result = trained
    metrics = result.eval_results[TASK]
    assert set(metrics) == {"exact_match", "mean_log_likelihood"}
    assert metrics["mean_log_likelihood"] < 0
    records = trainer_testing.read_metrics(model_dir)
    eval_record = next(r for r in records if f"eval/{TASK}/exact_match" in r)
    assert eval_record["step"] == 2
    assert eval_record[f"eval/{TASK}/mean_log_likelihood"] == pytest.approx(metrics["mean_log_likelihood"])
    assert list((model_dir / "train").glob("events.out.tfevents.*")), "no TensorBoard events"
    assert (model_dir / "eval" / f"{TASK}-metrics.jsonl").exists()  # seqio's JSONLogger


def test_evaluate_infer_and_direct_model_calls_agree(trained, model, tmp_path, vocabulary):
    model_dir, partitioner, result = trained
    config = data.DatasetConfig(TASK, LENGTHS, "validation", batch_size=8, shuffle=False)
    metrics = evaluate.evaluate(model=model, dataset_cfg=config, partitioner=partitioner,
                                checkpoint_path=str(model_dir), output_dir=str(tmp_path / "eval"),
                                tensorboard=False)[TASK]
    assert metrics == pytest.approx(result.eval_results[TASK], abs=1e-6)

    written = infer.infer(model=model, dataset_cfg=config, partitioner=partitioner, checkpoint_path=str(model_dir),
                          output_dir=str(tmp_path / "infer"))
    assert [p.name for p in written] == [f"{TASK}-validation.jsonl"]
    records = [json.loads(line) for line in written[0].read_text().splitlines()]
    assert len(records) == 20 and [r["index"] for r in records] == list(range(20))
    assert {"prediction", "targets", "inputs"} <= set(records[0])
    by_hand = 100.0 * np.mean([r["prediction"] == r["targets"] for r in records])
    assert metrics["exact_match"] == pytest.approx(by_hand)

    # Scores straight from the model on the converted examples, without the partitioned predictor.
    converter = seqio.EncDecFeatureConverter(pack=False)
    raw = seqio.get_mixture_or_task(TASK).get_dataset(LENGTHS, split="validation", shuffle=False)
    examples = list(converter(raw, LENGTHS).as_numpy_iterator())
    batch = {name: np.stack([e[name] for e in examples]) for name in examples[0]}
    scores = jax.jit(model.score_batch)(jax.device_get(result.state.params), batch)
    assert metrics["mean_log_likelihood"] == pytest.approx(float(np.mean(scores)), abs=1e-5)
    decoded = jax.jit(model.predict_batch)(jax.device_get(result.state.params), batch)
    assert [vocabulary.decode(row.tolist()) for row in np.asarray(decoded)] == [r["prediction"] for r in records]


def test_seqio_data_source_shards_per_host(copy_task, model):
    del copy_task
    source = data.as_data_source(data.DatasetConfig(TASK, LENGTHS, "train", batch_size=4, seed=3), model)
    halves = [next(source.make_iterator(partitioning.HostBatchShard(i, 2, 2, 4), 0)) for i in range(2)]
    first_rows = {tuple(h["encoder_input_tokens"][0]) for h in halves}
    assert len(first_rows) == 2  # the two hosts read different examples
    skipped = next(source.make_iterator(partitioning.HostBatchShard(0, 2, 2, 4), 1))
    iterator = source.make_iterator(partitioning.HostBatchShard(0, 2, 2, 4), 0)
    next(iterator)
    second = next(iterator)
    np.testing.assert_array_equal(skipped["encoder_input_tokens"], second["encoder_input_tokens"])
