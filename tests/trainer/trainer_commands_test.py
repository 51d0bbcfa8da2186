"""Command-line plumbing: gin flags and overrides, multi-process flags and environment, help texts, peak FLOPs."""

import argparse

import pytest

from class_jax import cli
from class_jax.runtime import distributed
from class_jax.runtime import gin_utils
from class_jax.trainer import metrics


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    gin_utils.add_gin_arguments(parser)
    distributed.add_arguments(parser)
    return parser


def test_gin_overrides_become_bindings_in_command_line_order():
    args = _parser().parse_args(["--gin_file=a.gin", "--gin.MODEL_DIR='/tmp/x'", "--gin_file=b.gin",
                                 "--gin.train_script.train.total_steps", "5", "--gin_bindings=BATCH_SIZE = 8",
                                 "--gin_search_paths=/opt/gin,/srv/gin", "--process_id=1"])
    assert args.gin_file == ["a.gin", "b.gin"]
    assert args.gin_overrides == ["MODEL_DIR = '/tmp/x'", "train_script.train.total_steps = 5"]
    assert args.gin_bindings == ["BATCH_SIZE = 8"]
    assert gin_utils.search_paths(args.gin_search_paths)[1:3] == ["/opt/gin", "/srv/gin"]
    assert args.process_id == 1


def test_unknown_flags_are_still_rejected(capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["--gin_file=a.gin", "--not_a_flag=1"])
    assert "unrecognized arguments: --not_a_flag=1" in capsys.readouterr().err


def test_distributed_settings_merge_flags_over_environment(monkeypatch):
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "10.0.0.1:1234")
    monkeypatch.setenv("JAX_NUM_PROCESSES", "4")
    monkeypatch.setenv("JAX_PROCESS_ID", "3")
    config = distributed.config_from_args(_parser().parse_args(["--process_id=0"]))
    assert (config.coordinator_address, config.num_processes, config.process_id) == ("10.0.0.1:1234", 4, 0)
    with pytest.raises(ValueError, match="--num_processes and --process_id"):
        distributed.initialize(distributed.DistributedConfig(coordinator_address="localhost:1"))
    assert distributed.initialize(distributed.DistributedConfig(mode="off")) is False


@pytest.mark.parametrize("command", ["train", "eval", "infer", "export"])
def test_commands_are_registered_with_gin_and_multi_process_flags(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--gin_file", "--gin_bindings", "--gin_search_paths", "--gin.NAME=VALUE", "--coordinator_address"):
        assert flag in text, flag


def test_peak_flops_prefers_gin_then_datasheet_then_measurement():
    assert metrics.peak_flops_per_device(2e12) == (2e12, "configured")
    assert metrics.known_peak_flops("TPU v4") == 275e12
    assert metrics.known_peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert metrics.known_peak_flops("cpu") is None
    measured, source = metrics.peak_flops_per_device(None)  # the test devices are CPUs
    assert source == "measured" and measured > 1e6


def test_feature_converters_come_from_the_model():
    from class_jax.trainer import data  # pylint: disable=import-outside-toplevel
    import trainer_test_model as tm  # pylint: disable=import-outside-toplevel

    class Converter:
        def __init__(self, pack):
            self.pack = pack

    class Plain(tm.TinyEncDecModel):
        FEATURE_CONVERTER_CLS = None

    class Named(Plain):
        FEATURE_CONVERTER_CLS = Converter

    with pytest.raises(ValueError, match="FEATURE_CONVERTER_CLS"):
        data.feature_converter_for(Plain())
    converter = data.feature_converter_for(Named(), pack=True)
    assert isinstance(converter, Converter) and converter.pack
    assert type(data.feature_converter_for(tm.TinyEncDecModel())).__name__ == "EncDecFeatureConverter"
