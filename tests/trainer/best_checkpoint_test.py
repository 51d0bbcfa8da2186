"""The dev-selection hook: the best checkpoint survives a kill and resume, outlives `keep`, and bad input fails at
start."""

import pathlib

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from class_jax.runtime import partitioning
from class_jax.runtime.errors import UserError
from class_jax.trainer import checkpointer, data, dev_selection, hooks
import trainer_testing

TOTAL_STEPS = 8
PEAK_STEP = 4


class Killed(Exception):
    """Stands for the job being killed after step 6's checkpoint (no clean stop, no final save)."""


class PeakingMetric:
    """A dev evaluator whose score peaks at step 4; it remembers the parameters it saw at each step."""

    name = "fake"

    def __init__(self):
        self.params: dict[int, dict] = {}
        self.checked = False

    def check(self) -> None:
        self.checked = True

    def metric_names(self) -> list[str]:
        return ["score", "step"]

    def evaluate(self, ctx: hooks.HookContext) -> dict[str, float]:
        self.params[ctx.step] = jax.device_get(ctx.params)
        return {"score": -float((ctx.step - PEAK_STEP) ** 2), "step": float(ctx.step)}


def _kill_at_six(ctx: hooks.HookContext) -> None:
    if ctx.step == 6 and not ctx.resuming:
        raise Killed()


def _eval_hooks(evaluator, metric: str = "fake/score") -> list[hooks.PeriodicHook]:
    return dev_selection.dev_selection_hooks(evaluators=[evaluator], metric=metric, every_steps=2,
                                             tensorboard=False)


def _train(model_dir: pathlib.Path, evaluator, **kwargs):
    # keep=1: the rolling checkpoints' retention would delete step 4 long before the end.
    return trainer_testing.train_tiny(
        model_dir, partitioning.Partitioner((-1, 1, 1)), total_steps=TOTAL_STEPS,
        checkpoint_cfg=checkpointer.CheckpointConfig(save_every_steps=2, keep=1, async_save=False),
        eval_hooks=_eval_hooks(evaluator), **kwargs)


def _flat(tree) -> dict[str, np.ndarray]:
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory):
    """A run killed at step 6 (after its checkpoint, before the step-6 evaluation), then resumed to step 8."""
    model_dir = tmp_path_factory.mktemp("best") / "run"
    first = PeakingMetric()
    with pytest.raises(Killed):
        _train(model_dir, first, hooks=[hooks.PeriodicHook(_kill_at_six, every_steps=6, run_at_start=False,
                                                            name="kill")])
    best_after_kill = dev_selection.read_best(model_dir)
    second = PeakingMetric()
    result = _train(model_dir, second)
    return model_dir, first, second, best_after_kill, result


def test_best_checkpoint_keeps_the_peak_step_across_kill_and_resume(killed_and_resumed):
    model_dir, first, second, best_after_kill, result = killed_and_resumed
    assert result.step == TOTAL_STEPS and not result.preempted
    assert sorted(first.params) == [2, 4] and first.checked
    # The resumed run evaluates the step it resumed at (6) and, after the loop, the last step (8).
    assert sorted(second.params) == [6, 8]
    assert best_after_kill["step"] == PEAK_STEP

    best = dev_selection.read_best(model_dir)
    assert best["step"] == PEAK_STEP and best["value"] == 0.0
    assert best["metric"] == "fake/score" and best["mode"] == "max"
    assert best["metrics"] == {"dev/fake/score": 0.0, "dev/fake/step": 4.0}

    with ocp.StandardCheckpointer() as restorer:
        stored = restorer.restore(dev_selection.best_dir(model_dir) / "params")
    expected, later = _flat(first.params[PEAK_STEP]), _flat(second.params[TOTAL_STEPS])
    got = _flat(stored)
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)
    assert any(not np.array_equal(got[name], later[name]) for name in got)

    # Logged like every metric, under dev/, once per evaluated step (the kill left no stale records behind).
    dev_records = [r for r in trainer_testing.read_metrics(model_dir) if "dev/fake/score" in r]
    assert [r["step"] for r in dev_records] == [2, 4, 6, 8]
    assert [r["dev/best/step"] for r in dev_records] == [2, 4, 4, 4]


def test_keep_does_not_delete_the_best_checkpoint(killed_and_resumed):
    model_dir = killed_and_resumed[0]
    assert checkpointer.TrainCheckpointer(model_dir, read_only=True).all_steps() == [TOTAL_STEPS]
    best = dev_selection.best_dir(model_dir)
    assert (best / "params").is_dir() and (best / dev_selection.BEST_FILE).is_file()
    assert best.parent == model_dir.absolute() and best.name != checkpointer.CHECKPOINT_SUBDIR


def test_missing_task_fails_at_start(tmp_path):
    evaluator = dev_selection.SeqioDevEval(
        data.DatasetConfig("no_such_dev_task", {"inputs": 8, "targets": 4}, "validation", batch_size=8,
                           shuffle=False, num_epochs=1))
    with pytest.raises(UserError, match="no SeqIO task or mixture 'no_such_dev_task'") as error:
        trainer_testing.train_tiny(tmp_path / "run", partitioning.Partitioner((-1, 1, 1)), total_steps=2,
                                   eval_hooks=dev_selection.dev_selection_hooks(
                                       evaluators=[evaluator], metric="no_such_dev_task/f1", tensorboard=False))
    assert "\n" not in str(error.value)
    # Failed before the checkpointer, the data or the compiled step existed.
    assert not (tmp_path / "run" / checkpointer.CHECKPOINT_SUBDIR).exists()


@pytest.mark.parametrize("metric, message", [("fake/nope", "'fake' produces score, step; not 'nope'"),
                                             ("other/score", "an evaluator among \\['fake'\\]")])
def test_unknown_metric_fails_at_start(tmp_path, metric, message):
    with pytest.raises(UserError, match=message) as error:
        trainer_testing.train_tiny(tmp_path / "run", partitioning.Partitioner((-1, 1, 1)), total_steps=2,
                                   eval_hooks=_eval_hooks(PeakingMetric(), metric))
    assert "\n" not in str(error.value)
    assert not (tmp_path / "run" / checkpointer.CHECKPOINT_SUBDIR).exists()


def test_best_selected_by_another_metric_is_refused(killed_and_resumed, tmp_path):
    model_dir = killed_and_resumed[0]
    selection = dev_selection.DevSelection([PeakingMetric()], "fake/step", tensorboard=False)
    ctx = hooks.HookContext(step=8, params={}, model=None, partitioner=None, model_dir=model_dir.absolute(),
                            resuming=True)
    with pytest.raises(UserError, match="chosen by 'fake/score'"):
        selection(ctx)


def test_seqio_dev_eval_exposes_the_task_metrics_to_the_selection(tmp_path):
    """A SeqIO task's own metric fns, run by trainer/evaluate.py, select the best step (here: the last one, min)."""
    import seqio  # pylint: disable=import-outside-toplevel
    from seqio import test_utils as seqio_test_utils  # pylint: disable=import-outside-toplevel
    from class_jax.trainer import evaluate  # pylint: disable=import-outside-toplevel
    import trainer_test_model as tm  # pylint: disable=import-outside-toplevel

    def exact_match(targets, predictions):
        return {"exact_match": 100.0 * float(np.mean([t == p for t, p in zip(targets, predictions)]))}

    task_name = "class_jax_dev_selection_test_copy"
    vocabulary = seqio_test_utils.sentencepiece_vocab()
    evaluate.register_in_memory_task(task_name, [{"inputs": f"{w} {w}", "targets": w} for w in ("cat", "dog", "sun")],
                                     {name: seqio.Feature(vocabulary) for name in ("inputs", "targets")},
                                     [exact_match])
    try:
        evaluator = dev_selection.SeqioDevEval(
            data.DatasetConfig(task_name, {"inputs": 8, "targets": 6}, "validation", batch_size=8, shuffle=False,
                               num_epochs=1), name="copy")
        model_dir = tmp_path / "run"
        trainer_testing.train_tiny(
            model_dir, partitioning.Partitioner((-1, 1, 1)), total_steps=2,
            config=tm.TinyConfig(dropout_rate=0.1, max_decode_length=6),
            eval_hooks=dev_selection.dev_selection_hooks(evaluators=[evaluator], metric="copy/exact_match",
                                                         mode="min", every_steps=1, tensorboard=False))
    finally:
        seqio.TaskRegistry.remove(task_name)
    dev_records = [r for r in trainer_testing.read_metrics(model_dir) if "dev/copy/exact_match" in r]
    assert [r["step"] for r in dev_records] == [1, 2]
    best = dev_selection.read_best(model_dir)
    assert best["metric"] == "copy/exact_match" and best["mode"] == "min"
    assert best["value"] == min(r["dev/copy/exact_match"] for r in dev_records)
    assert (model_dir / "dev" / "copy").is_dir()  # seqio's inference log of the dev evaluator
