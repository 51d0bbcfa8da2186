"""One stage vocabulary: names, old aliases (with a FutureWarning) and one-line errors, wherever a stage is named."""

import json
import warnings

import gin
import pytest

from class_jax.mining import pipeline as mining_pipeline
from class_jax.models import class_model
from class_jax.runtime import stages
from class_jax.runtime.errors import UserError
from class_jax.tasks import fid_tasks

Stage = stages.Stage
ALL_NAMES = "clr_pt, mlqa_pt, finetune, xor_full_eval, mkqa_eval, xor_retrieve_eval"


@pytest.fixture(autouse=True)
def _clear_gin():
    yield
    gin.clear_config()


def test_every_stage_parses_silently_to_itself():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for stage in Stage:
            assert stages.parse(stage.value) is stage
            assert stages.parse(stage) is stage
    assert stages.names() == tuple(ALL_NAMES.split(", "))
    assert stages.TRAINING_STAGES + stages.EVAL_STAGES == tuple(Stage)
    assert [stage.is_eval for stage in Stage] == [False] * 3 + [True] * 3


def test_a_stage_is_written_as_its_name():
    assert str(Stage.MLQA_PT) == f"{Stage.MLQA_PT}" == "mlqa_pt" == Stage.MLQA_PT
    assert json.dumps({"kind": Stage.FINETUNE}) == '{"kind": "finetune"}'


@pytest.mark.parametrize("old, new", [("anchor_qa", Stage.MLQA_PT), ("qa", Stage.FINETUNE),
                                      ("reader", Stage.FINETUNE), ("questions", Stage.FINETUNE)])
def test_old_names_still_parse_with_a_warning_naming_the_new_one(old, new):
    assert stages.ALIASES[old] is new
    with pytest.warns(FutureWarning, match=f"'{old}' is a deprecated name; write '{new.value}' instead"):
        assert stages.parse(old) is new
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert stages.parse(old, warn=False) is new  # names read back from old files


@pytest.mark.parametrize("name", ["translate", "", "MLQA_PT", None])
def test_unknown_names_are_one_line_errors_listing_the_valid_names(name):
    with pytest.raises(ValueError) as raised:
        stages.parse(name, what="FiD task kind")
    message = str(raised.value)
    assert message == f"unknown FiD task kind {name!r}; expected one of: {ALL_NAMES}" and "\n" not in message


def test_allowed_narrows_the_names_and_the_message():
    with pytest.raises(ValueError, match=r"^unknown refresh kind 'clr_pt'; expected one of: mlqa_pt, finetune$"):
        stages.parse("clr_pt", allowed=(Stage.MLQA_PT, Stage.FINETUNE), what="refresh kind")


def test_loss_stage_reads_old_gin_bindings_with_a_warning():
    gin.parse_config("from __gin__ import dynamic_registration\n"
                     "from class_jax.models import class_model\n"
                     "LOSS = @class_model.LossConfig()\n"
                     "class_model.LossConfig.stage = 'reader'\n")
    with pytest.warns(FutureWarning, match="LossConfig.stage 'reader' is a deprecated name; write 'finetune'"):
        assert gin.query_parameter("%LOSS").scoped_configurable_fn().stage is Stage.FINETUNE
    assert class_model.LossConfig(stage="clr_pt").stage is Stage.CLR_PT
    assert class_model.LossConfig().stage is Stage.FINETUNE
    with pytest.raises(ValueError, match="^unknown LossConfig.stage 'xor_full_eval'; expected one of: clr_pt, "
                                         "mlqa_pt, finetune$"):
        class_model.LossConfig(stage="xor_full_eval")


def test_fid_task_kinds_are_the_stages():
    assert fid_tasks.KINDS == stages.names()
    with pytest.warns(FutureWarning, match="FiD task kind 'anchor_qa' is a deprecated name; write 'mlqa_pt'"):
        assert fid_tasks.kind_spec("anchor_qa") == fid_tasks.kind_spec("mlqa_pt")
    with pytest.warns(FutureWarning, match="'qa' is a deprecated name; write 'finetune'"):
        assert fid_tasks.kind_spec("qa") is fid_tasks.KIND_SPECS[Stage.FINETUNE]
    assert fid_tasks.kind_spec(Stage.MLQA_PT).options == {"drop_source_passage": True}
    assert fid_tasks.kind_spec("clr_pt").stage1 and not fid_tasks.kind_spec("finetune").stage1


def test_mining_stages_read_the_old_name_and_reject_unknown_ones():
    parse_stages = mining_pipeline._parse_stages  # pylint: disable=protected-access
    with pytest.warns(FutureWarning, match="--stages value 'anchor_qa' is a deprecated name; write 'mlqa_pt'"):
        assert parse_stages(("anchor_qa", "teacher")) == {"mlqa_pt", "teacher"}
    with pytest.raises(UserError, match=r"unknown stage\(s\) finetune, nope \(known: clr_pt, mlqa_pt, teacher\)"):
        parse_stages(("clr_pt", "nope", "finetune"))


def test_mining_steps_are_one_table():
    steps = mining_pipeline.STEPS
    assert [step.name for step in steps] == ["clr_pt", "mlqa_pt", "mlqa_pt_questions", "teacher"]
    assert {step.stage for step in steps} == set(mining_pipeline.STAGES)
    assert mining_pipeline.STEP_DATASETS == {"clr_pt": "clr_pt", "mlqa_pt": "mlqa_pt_clozes",
                                             "mlqa_pt_questions": "mlqa_pt", "teacher": "clr_pt_teacher"}
    assert all(step.upstream in (None, *mining_pipeline.STEPS_BY_NAME) for step in steps)
