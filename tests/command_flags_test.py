"""The command-line convention of every `class-jax` command: snake_case flags (as T5X), old spellings deprecated."""

import re

import pytest

from class_jax import cli

SNAKE_CASE_OPTION = re.compile(r"-[a-zA-Z]|--[a-z0-9]+(_[a-z0-9]+)*")


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_every_option_of_every_command_is_snake_case(command):
    _, parser = cli.make_parser(command)
    actions = parser._actions  # pylint: disable=protected-access
    options = [option for action in actions for option in action.option_strings]
    assert options, command
    bad = [option for option in options if not SNAKE_CASE_OPTION.fullmatch(option)]
    assert not bad, f"class-jax {command}: flags not in snake_case: {bad}"


def _mine_args(tmp_path, *extra):
    return ["--corpus", str(tmp_path / "corpus"), "--out", str(tmp_path / "out"), "--langs", "ja", *extra]


def test_old_hyphenated_spellings_still_parse_and_warn(tmp_path, capsys):
    _, parser = cli.make_parser("mine")
    argv = cli.rewrite_deprecated_flags(parser, _mine_args(
        tmp_path, "--records-per-shard=7", "--no-progress", "--mask-token", "[M]", "--rewriter_model=--keep-me",
        "--", "--direct-num-workers=1"))
    args = parser.parse_args(argv)
    assert (args.records_per_shard, args.no_progress, args.mask_token) == (7, True, "[M]")
    assert args.rewriter_model == "--keep-me"  # values are never rewritten
    assert args.beam_args == ["--direct-num-workers=1"]  # nor anything after `--`
    warnings = capsys.readouterr().err.strip().splitlines()
    assert warnings == [f"class-jax mine: warning: {old} is deprecated and will be removed; use {new}"
                        for old, new in [("--records-per-shard", "--records_per_shard"),
                                         ("--no-progress", "--no_progress"), ("--mask-token", "--mask_token")]]


def test_the_new_spellings_do_not_warn(tmp_path, capsys):
    _, parser = cli.make_parser("mine")
    argv = _mine_args(tmp_path, "--records_per_shard", "7", "--no_progress")
    assert cli.rewrite_deprecated_flags(parser, argv) == argv
    assert capsys.readouterr().err == ""


def test_gin_overrides_are_left_alone_and_gin_flags_have_aliases_too(capsys):
    _, parser = cli.make_parser("train")
    args = parser.parse_args(cli.rewrite_deprecated_flags(parser, ["--gin-file=a.gin", "--gin.TRAIN_STEPS=3"]))
    assert args.gin_file == ["a.gin"] and args.gin_overrides == ["TRAIN_STEPS = 3"]
    assert cli.rewrite_deprecated_flags(parser, ["--gin.my-name=1"]) == ["--gin.my-name=1"]
    assert "use --gin_file" in capsys.readouterr().err


def test_a_deprecated_spelling_works_through_the_command_line(tmp_path, capsys):
    code = cli.main(["mine", *_mine_args(tmp_path, "--no-progress", "--records-per-shard", "5")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1] == f"class-jax mine: error: {tmp_path / 'corpus'}: corpus folder not found"
    assert "class-jax mine: warning: --no-progress is deprecated and will be removed; use --no_progress" in err


@pytest.mark.parametrize("flag", ["--no-such-flag", "--no_such_flag", "--records-per-shrd=3"])
def test_an_unknown_flag_still_fails(tmp_path, capsys, flag):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["mine", *_mine_args(tmp_path, flag)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"unrecognized arguments: {flag}" in err and "deprecated" not in err
