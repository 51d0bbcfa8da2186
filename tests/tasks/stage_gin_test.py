"""The stage gin files carry the paper's hyperparameters and register their data when the trainer reads it."""

import pathlib
import sys

import gin
import pytest
import seqio

from class_jax.runtime.errors import UserError
from class_jax.models import class_model
from class_jax.tasks import fid_tasks
from class_jax.trainer import data
from class_jax.runtime import gin_utils
from class_jax.runtime import stages
from class_jax.trainer import teacher_checkpoint

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "checkpoints"))
import checkpoint_fixtures as fx  # pylint: disable=wrong-import-position

CLR_PT_LANGUAGES = ["ar", "bn", "de", "es", "fi", "fr", "it", "ja", "ko", "ru", "te", "ta", "ml", "kn", "zh"]
FID_LENGTHS = {"query_tokens": 50, "passage_tokens": (100, 200), "targets": 50}

# stage -> (its data macro, steps, learning rate, warm-up steps (10% of the steps, as the release), loss stage,
# registered name, task kind or languages)
TRAINING_STAGES = {
    "clr_pt": ("CLR_PT_FID_DIRS", 64000, 1e-4, 6400, "clr_pt", "clr_pt", CLR_PT_LANGUAGES),
    "mlqa_pt": ("MLQA_PT_FID_DIRS", 16000, 5e-5, 1600, "mlqa_pt", "mlqa_pt", CLR_PT_LANGUAGES),
    "finetune_nq": ("TRAIN_FID_DIRS", 8000, 5e-5, 800, "finetune", "finetune_nq", "finetune"),
    "finetune_xor_retrieve": ("TRAIN_FID_DIRS", 6000, 5e-5, 600, "finetune", "finetune_xor_retrieve", "finetune"),
    "finetune_xor_full": ("TRAIN_FID_DIRS", 6000, 5e-5, 600, "finetune", "finetune_xor_full", "finetune"),
}
EVAL_STAGES = {"eval_xor_retrieve": "xor_retrieve_eval", "eval_xor_full": "xor_full_eval", "eval_mkqa": "mkqa_eval"}


@pytest.fixture(autouse=True)
def _clear_gin():
    yield
    gin.clear_config()


@pytest.fixture(name="teacher_dir", scope="module")
def fixture_teacher_dir(tmp_path_factory) -> pathlib.Path:
    """A directory with a teacher vocabulary (what TEACHER_CHECKPOINT names; its weights are read only by train)."""
    directory = tmp_path_factory.mktemp("reatt")
    fx.write_sentencepiece(directory / "spiece.model")
    return directory


def _neural_teacher(stage: str, size: str) -> bool:
    """The paper's stage 1 (mT5-large) distils ReAtt-large on the fly."""
    return stage == "clr_pt" and size == "mt5_large"


def _dataset_config(scope: str) -> data.DatasetConfig:
    with gin.config_scope(scope):
        return gin.get_configurable(data.DatasetConfig)()


@pytest.mark.parametrize("size", ["mt5_base", "mt5_large", "mt5_xl"])
@pytest.mark.parametrize("stage", sorted(TRAINING_STAGES))
def test_training_stage_hyperparameters_and_data(stage, size, tmp_path, teacher_dir):
    macro, steps, learning_rate, warmup, loss_stage, name, what = TRAINING_STAGES[stage]
    fid_dirs = str(tmp_path / "fid" / "{lang}") if isinstance(what, list) else str(tmp_path / "fid")
    neural_teacher = _neural_teacher(stage, size)
    gin_utils.parse_gin([f"stages/{size}/{stage}.gin"], [
        f"MODEL_DIR = '{tmp_path / 'run'}'", f"{macro} = '{fid_dirs}'", "INITIAL_CHECKPOINT_PATH = '/ckpt'"]
        + ([f"TEACHER_CHECKPOINT = '{teacher_dir}'"] if neural_teacher else []))
    assert gin.query_parameter("%TRAIN_STEPS") == steps
    assert gin.query_parameter("%LEARNING_RATE") == learning_rate
    assert gin.query_parameter("%WARMUP_STEPS") == warmup
    assert gin.query_parameter("%LR_DECAY") == "linear"
    assert gin.query_parameter("%WEIGHT_DECAY") == 0.01 and gin.query_parameter("%GRAD_CLIP_NORM") == 1.0
    assert gin.query_parameter("%USE_CACHED_TASKS") is False
    loss = gin.get_configurable(class_model.LossConfig)()
    assert (loss.stage, loss.alpha) == (loss_stage, 8.0)
    if stage == "clr_pt":  # stage 1's passages are the teacher's, fixed
        assert gin.query_parameter("train_script.train.hooks") == []
        # The release's reader terms: CE on both chunks, decoder KL and answer alignment x1.
        assert (loss.decoder_teacher_kl, loss.decoder_teacher_weight, loss.answer_alignment_kl,
                loss.answer_alignment_weight) == (True, 1.0, True, 1.0)
        if neural_teacher:
            teacher = gin.get_configurable(teacher_checkpoint.Teacher)()
            assert teacher.checkpoint == str(teacher_dir) and teacher.model.config.retrieval_mode == "token"
    else:  # passages re-retrieved every 1,000 steps (stages/refresh.gin)
        assert gin.query_parameter("%REFRESH_EVERY_STEPS") == 1000

    config = _dataset_config("train")  # evaluating MIXTURE_OR_TASK_NAME registers the stage's data
    assert config.batch_size == 64 and config.mixture_or_task_name == name
    lengths = dict(FID_LENGTHS, **({"english_query_tokens": 50, "teacher_scores": 100} if stage == "clr_pt" else {}))
    if neural_teacher:  # the teacher's own tokenization, at the student's lengths
        lengths.update(teacher_query_tokens=50, teacher_passage_tokens=(100, 200), teacher_targets=50)
    assert dict(config.task_feature_lengths) == lengths
    registered = seqio.get_mixture_or_task(name)
    if isinstance(what, list):
        assert sorted(t.name for t in registered.tasks) == sorted(f"{name}_{lang}" for lang in what)
        task = seqio.get_mixture_or_task(f"{name}_ja")
        assert task.source._split_to_dirs["train"] == fid_dirs.format(lang="ja")  # pylint: disable=protected-access
    else:
        assert registered.source._split_to_dirs["train"] == fid_dirs  # pylint: disable=protected-access


@pytest.mark.parametrize("size", ["mt5_large", "mt5_xl"])
@pytest.mark.parametrize("stage", sorted(EVAL_STAGES))
def test_eval_stage_registers_its_scored_task(stage, size, tmp_path):
    gin_utils.parse_gin([f"stages/{size}/{stage}.gin"], [
        f"CHECKPOINT_PATH = '{tmp_path / 'run'}'", f"EVAL_OUTPUT_DIR = '{tmp_path / 'eval'}'",
        f"EVAL_FID_DIRS = '{tmp_path / 'fid'}'"])
    config = _dataset_config("eval")
    assert config.mixture_or_task_name == stage and config.split == "validation" and not config.shuffle
    assert dict(config.task_feature_lengths) == FID_LENGTHS
    task = seqio.get_mixture_or_task(stage)
    expected_metric = fid_tasks.kind_spec(EVAL_STAGES[stage]).metric_fns
    assert tuple(task.metric_fns) == tuple(expected_metric)


def test_unset_data_directory_is_reported_by_name(tmp_path):
    with pytest.raises(UserError, match="TRAIN_FID_DIRS/macro.value set to `%gin.REQUIRED`"):
        gin_utils.parse_gin(["stages/mt5_base/finetune_xor_full.gin"],
                            [f"MODEL_DIR = '{tmp_path}'", "INITIAL_CHECKPOINT_PATH = '/ckpt'"])


def test_old_stage_names_in_gin_still_work_with_a_warning(tmp_path):
    fid_dirs = str(tmp_path / "fid" / "{lang}")
    gin_utils.parse_gin(["stages/mt5_base/mlqa_pt.gin"], [
        f"MODEL_DIR = '{tmp_path / 'run'}'", f"MLQA_PT_FID_DIRS = '{fid_dirs}'", "INITIAL_CHECKPOINT_PATH = '/ckpt'",
        "class_model.LossConfig.stage = 'reader'", "fid_tasks.fid_mixture.kind = 'anchor_qa'"])
    with pytest.warns(FutureWarning, match="LossConfig.stage 'reader' is a deprecated name; write 'finetune'"):
        assert gin.get_configurable(class_model.LossConfig)().stage is stages.Stage.FINETUNE
    with pytest.warns(FutureWarning, match="FiD task kind 'anchor_qa' is a deprecated name; write 'mlqa_pt'"):
        assert _dataset_config("train").mixture_or_task_name == "mlqa_pt"
    task = seqio.get_mixture_or_task("mlqa_pt_ja")
    assert task.preprocessors[0].keywords == {"drop_source_passage": True}  # the MLQA-PT task, not fine-tuning's


def test_unknown_stage_name_in_gin_is_an_error_listing_the_valid_names(tmp_path):
    gin_utils.parse_gin(["stages/mt5_base/finetune_nq.gin"], [
        f"MODEL_DIR = '{tmp_path / 'run'}'", f"TRAIN_FID_DIRS = '{tmp_path / 'fid'}'",
        "INITIAL_CHECKPOINT_PATH = '/ckpt'", "fid_tasks.fid_task.kind = 'nq'"])
    with pytest.raises(ValueError, match="unknown FiD task kind 'nq'; expected one of: clr_pt, mlqa_pt, finetune, "
                                         "xor_full_eval, mkqa_eval, xor_retrieve_eval"):
        _dataset_config("train")


@pytest.mark.parametrize("size", ["mt5_large", "mt5_xl"])
@pytest.mark.parametrize("stage", sorted(TRAINING_STAGES) + sorted(EVAL_STAGES))
def test_large_model_stages_compute_in_bfloat16_and_training_stages_rematerialise(stage, size, tmp_path,
                                                                                   teacher_dir):
    from class_jax.models import config as config_lib  # pylint: disable=import-outside-toplevel
    training = stage in TRAINING_STAGES
    bindings = [f"MODEL_DIR = '{tmp_path / 'run'}'", "INITIAL_CHECKPOINT_PATH = '/ckpt'",
                f"CHECKPOINT_PATH = '{tmp_path / 'run'}'", f"EVAL_OUTPUT_DIR = '{tmp_path / 'eval'}'",
                f"TEACHER_CHECKPOINT = '{teacher_dir}'"]
    macro = TRAINING_STAGES[stage][0] if training else "EVAL_FID_DIRS"
    bindings.append(f"{macro} = '{tmp_path / 'fid' / '{lang}'}'")
    gin_utils.parse_gin([f"stages/{size}/{stage}.gin"],
                        [b for b in bindings if b.split(" =")[0] in _macros(stage, size)])
    model_config = gin.get_configurable(config_lib.ModelConfig)()
    assert model_config.dtype == "bfloat16"
    assert model_config.remat_policy == ("full" if training else "none")
    rules = dict(gin.query_parameter("partitioning.Partitioner.logical_axis_rules"))
    assert rules["embed"] == "fsdp" and (rules.get("mlp") == "model") == (size == "mt5_xl")


def _macros(stage: str, size: str) -> set[str]:
    if stage in TRAINING_STAGES:
        return ({"MODEL_DIR", "INITIAL_CHECKPOINT_PATH", TRAINING_STAGES[stage][0]}
                | ({"TEACHER_CHECKPOINT"} if _neural_teacher(stage, size) else set()))
    return {"CHECKPOINT_PATH", "EVAL_OUTPUT_DIR", "EVAL_FID_DIRS"}
