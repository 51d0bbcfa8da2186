"""`class-jax train` with malformed flags: one line naming the gin parameter and its allowed range, exit code 2.

Every case goes through `class_jax.cli.main` in this process with the tiny test model (testdata/tiny_train.gin),
and fails before training starts; one valid run checks that the checks let good flags through.
"""

import gin
import pytest

from class_jax import cli
from class_jax.runtime import gin_utils
from class_jax.runtime.errors import UserError
import trainer_testing


@pytest.fixture(autouse=True)
def _clear_gin():
    gin.clear_config()
    yield
    gin.clear_config()


def _train(capsys, *flags: str) -> tuple[int, str]:
    """Runs `class-jax train` on the tiny gin with `flags` (after the defaults); returns (exit code, stderr)."""
    code = cli.main(["train", f"--gin_file={trainer_testing.TINY_TRAIN_GIN}", "--gin_file=sharding/data_parallel.gin",
                     "--gin.train_script.train.hooks=[]", *flags])
    return code, capsys.readouterr().err


# flags -> what the one-line error must name (each: the parameter, and the allowed range or the problem).
BAD_FLAGS = {
    "train_steps_not_a_number": (["--gin.TRAIN_STEPS='abc'"], ["TRAIN_STEPS", "total_steps", "an integer >= 1",
                                                               "'abc'"]),
    "train_steps_negative": (["--gin.TRAIN_STEPS=-5"], ["TRAIN_STEPS", "total_steps", ">= 1", "-5"]),
    "train_steps_zero": (["--gin.TRAIN_STEPS=0"], ["TRAIN_STEPS", ">= 1"]),
    "train_steps_float": (["--gin.TRAIN_STEPS=2.5"], ["TRAIN_STEPS", "an integer"]),
    "train_steps_direct": (["--gin.train_script.train.total_steps=0"], ["train_script.train.total_steps", ">= 1"]),
    "batch_size_zero": (["--gin.BATCH_SIZE=0"], ["BATCH_SIZE", "global_batch_size", ">= 1"]),
    "batch_size_not_a_number": (["--gin.BATCH_SIZE='eight'"], ["BATCH_SIZE", "an integer >= 1"]),
    "batch_size_not_divisible_by_the_mesh": (["--gin.BATCH_SIZE=4"], ["batch size", "not divisible"]),
    "checkpoint_period_zero": (["--gin.CHECKPOINT_PERIOD=0"], ["CHECKPOINT_PERIOD", "save_every_steps", ">= 1"]),
    "checkpoints_to_keep_negative": (["--gin.CHECKPOINTS_TO_KEEP=-1"], ["CHECKPOINTS_TO_KEEP", "keep",
                                                                       ">= 1 or None"]),
    "learning_rate_negative": (["--gin.LEARNING_RATE=-0.1"], ["LEARNING_RATE", "peak_value", "> 0"]),
    "learning_rate_not_a_number": (["--gin.LEARNING_RATE='fast'"], ["LEARNING_RATE", "a finite number"]),
    "train_steps_unquoted_word": (["--gin.TRAIN_STEPS=abc"], ["TRAIN_STEPS = abc", "Failed to parse token 'abc'"]),
    "learning_rate_expression": (["--gin.LEARNING_RATE=float('nan')"], ["LEARNING_RATE = float('nan')"]),
    "batch_size_unclosed_bracket": (["--gin.BATCH_SIZE=[8,"], ["unclosed bracket"]),
    "warmup_negative": (["--gin.WARMUP_STEPS=-1"], ["WARMUP_STEPS", "warmup_steps", ">= 0"]),
    "warmup_longer_than_training": (["--gin.WARMUP_STEPS=100"], ["WARMUP_STEPS", "<= 12"]),
    "lr_decay_unknown": (["--gin.LR_DECAY='exponential'"], ["LR_DECAY", "decay", "'linear'"]),
    "weight_decay_negative": (["--gin.WEIGHT_DECAY=-0.01"], ["WEIGHT_DECAY", "weight_decay", ">= 0"]),
    "grad_clip_norm_negative": (["--gin.GRAD_CLIP_NORM=-1.0"], ["GRAD_CLIP_NORM", "grad_clip_norm", ">= 0"]),
    "microbatches_zero": (["--gin.NUM_MICROBATCHES=0"], ["NUM_MICROBATCHES", "num_microbatches", ">= 1"]),
    "microbatches_do_not_divide_the_batch": (["--gin.NUM_MICROBATCHES=3"], ["NUM_MICROBATCHES", "must divide"]),
    "microbatch_weighting_unknown": (["--gin.train_script.train.microbatch_weighting='tokens'"],
                                     ["microbatch_weighting", "'num_tokens'"]),
    "eval_period_zero": (["--gin.EVAL_PERIOD=0"], ["EVAL_PERIOD", "eval_period", ">= 1 or None"]),
    "log_period_negative": (["--gin.LOG_PERIOD=-3"], ["LOG_PERIOD", "log_period", ">= 1"]),
    "random_seed_negative": (["--gin.RANDOM_SEED=-1"], ["RANDOM_SEED", "random_seed", ">= 0"]),
    "stop_check_period_zero": (["--gin.train_script.train.stop_check_period=0"], ["stop_check_period", ">= 1"]),
    "misspelt_macro": (["--gin.TRIAN_STEPS=3"], ["gin macro TRIAN_STEPS is set but never used",
                                                 "did you mean TRAIN_STEPS?"]),
    "macro_this_run_does_not_read": (["--gin.REFRESH_EVERY_STEPS=5"], ["REFRESH_EVERY_STEPS", "never used"]),
}


@pytest.mark.parametrize("case", sorted(BAD_FLAGS))
def test_a_malformed_flag_is_a_one_line_error_naming_the_parameter(case, capsys, tmp_path):
    flags, expected = BAD_FLAGS[case]
    code, err = _train(capsys, f"--gin.MODEL_DIR='{tmp_path / 'run'}'", "--gin.TRAIN_STEPS=12", *flags)
    assert code == 2, err
    assert err.startswith("class-jax train: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for text in expected:
        assert text in err, (text, err)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_model_dir_that_is_a_file_is_named(capsys, tmp_path):
    existing = tmp_path / "notes.txt"
    existing.write_text("not a run")
    code, err = _train(capsys, f"--gin.MODEL_DIR='{existing}'", "--gin.TRAIN_STEPS=2")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "MODEL_DIR" in err and "names a file, not a directory" in err and str(existing) in err
    assert existing.read_text() == "not a run"


def test_model_dir_below_a_file_is_named(capsys, tmp_path):
    existing = tmp_path / "notes.txt"
    existing.write_text("not a run")
    code, err = _train(capsys, f"--gin.MODEL_DIR='{existing / 'run'}'", "--gin.TRAIN_STEPS=2")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "MODEL_DIR" in err and "cannot create" in err


def test_valid_flags_still_train(capsys, tmp_path):
    model_dir = tmp_path / "run"
    code, err = _train(capsys, f"--gin.MODEL_DIR='{model_dir}'", "--gin.TRAIN_STEPS=2", "--gin.NUM_MICROBATCHES=2",
                       "--gin.EVAL_PERIOD=None", "--gin.CHECKPOINTS_TO_KEEP=None", "--gin.WARMUP_STEPS=2")
    assert code == 0, err
    assert max(trainer_testing.loss_trajectory(model_dir)) == 2


def test_unused_macro_check_suggests_the_closest_name(tmp_path):
    user_gin = tmp_path / "my_run.gin"
    user_gin.write_text("include 'runs/export.gin'\nEXPORT_DIRR = '/tmp/x'\n")
    with pytest.raises(UserError, match=r"^gin macro EXPORT_DIRR is set but never used; did you mean EXPORT_DIR\?$"):
        gin_utils.parse_gin([str(user_gin)], ["CHECKPOINT_PATH = '/tmp/c'", "EXPORT_DIR = '/tmp/e'"],
                            check_macros=True)
    gin.clear_config()
    with pytest.raises(UserError, match=r"gin macros set but never used: STPE \(did you mean STEP\?\), "
                                        r"step \(did you mean the parameter export_script.export.step\?\)"):
        gin_utils.parse_gin(["runs/export.gin"], ["CHECKPOINT_PATH = '/tmp/c'", "EXPORT_DIR = '/tmp/e'", "STPE = 3",
                                                  "step = 3"], check_macros=True)
    gin.clear_config()
    # Macros that only some jobs of a shared installed file read are fine; set on the command line they are not.
    gin_utils.parse_gin(["runs/export.gin", "demo/common.gin"], ["CHECKPOINT_PATH = '/tmp/c'",
                                                                 "EXPORT_DIR = '/tmp/e'"],
                        check_macros=True, finalize=False)
    gin.clear_config()
    with pytest.raises(UserError, match="gin macro LEARNING_RATE is set but never used; no gin file of this run "
                                        "reads %LEARNING_RATE"):
        gin_utils.parse_gin(["runs/export.gin"], ["CHECKPOINT_PATH = '/tmp/c'", "EXPORT_DIR = '/tmp/e'",
                                                  "LEARNING_RATE = 1.0"], check_macros=True)
    gin.clear_config()
    # A macro used only through another used macro counts as used.
    gin_utils.parse_gin(["runs/export.gin"], ["CHECKPOINT_PATH = %MY_RUN", "MY_RUN = '/tmp/c'",
                                              "EXPORT_DIR = '/tmp/e'"], check_macros=True, finalize=False)
    defined, used = gin_utils.macro_usage()
    assert {"MY_RUN", "CHECKPOINT_PATH", "EXPORT_DIR", "STEP", "MODEL"} <= used and not defined - used


def test_a_corrupt_tfrecord_read_during_training_names_the_file(tmp_path):
    import numpy as np  # pylint: disable=import-outside-toplevel
    import seqio  # pylint: disable=import-outside-toplevel
    from seqio import test_utils as seqio_test_utils  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from class_jax.runtime import partitioning  # pylint: disable=import-outside-toplevel
    from class_jax.trainer import data  # pylint: disable=import-outside-toplevel
    import trainer_test_model as tm  # pylint: disable=import-outside-toplevel

    paths = [tmp_path / f"shard-{i}.tfrecord" for i in range(2)]
    for path in paths:
        with tf.io.TFRecordWriter(str(path)) as writer:
            for n in range(200):
                features = {name: tf.train.Feature(bytes_list=tf.train.BytesList(value=[f"word {n}".encode()]))
                            for name in ("inputs", "targets")}
                writer.write(tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString())
    damaged = bytearray(paths[1].read_bytes())
    for offset in range(len(damaged) // 3, len(damaged) // 3 + 16):
        damaged[offset] ^= 0x5A
    paths[1].write_bytes(bytes(damaged))

    vocabulary = seqio_test_utils.sentencepiece_vocab()
    name = "class_jax_train_flags_test_corrupt"
    seqio.TaskRegistry.add(
        name, seqio.TFExampleDataSource({"train": [str(p) for p in paths]}, {
            "inputs": tf.io.FixedLenFeature([], tf.string), "targets": tf.io.FixedLenFeature([], tf.string)}),
        preprocessors=[seqio.preprocessors.tokenize, seqio.preprocessors.append_eos],
        output_features={key: seqio.Feature(vocabulary) for key in ("inputs", "targets")})
    try:
        config = data.DatasetConfig(name, {"inputs": 8, "targets": 6}, "train", batch_size=8, shuffle=False, seed=0)
        source = data.as_data_source(config, tm.TinyEncDecModel(tm.TinyConfig()))
        shard = partitioning.Partitioner((-1, 1, 1)).host_batch_shard(8)
        with pytest.raises(UserError, match=f"^training data: {paths[1]}: the TFRecord file is corrupt or truncated"):
            data.peek_batch_spec(source, shard)
            feed = data.DataFeed(source, shard)
            for _ in range(100):
                assert np.asarray(feed.next_batch()["encoder_input_tokens"]).shape[0] == 8
        assert data.damaged_tfrecord_files(source) == [str(paths[1])]
    finally:
        seqio.TaskRegistry.remove(name)
