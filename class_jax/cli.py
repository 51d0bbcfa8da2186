"""The `class-jax` command.

Each subcommand lives in a module of `class_jax.commands`, imported only when it runs (so `class-jax --help` stays
fast and a missing optional dependency of one command never breaks another). A subcommand module provides:

    add_arguments(parser: argparse.ArgumentParser) -> None
    run(args: argparse.Namespace) -> int        # the process exit code; args.command names the subcommand

and raises `class_jax.runtime.errors.UserError` for bad input, which is printed as one line (exit code 2).
"""

import argparse
import importlib
import sys
from types import ModuleType
from typing import Sequence

from class_jax.runtime import host_malloc
from class_jax.runtime.errors import UserError

# `--gin.NAME=VALUE` binds a gin name (class_jax.runtime.gin_utils, not imported here: it pulls in JAX); never renamed.
GIN_OVERRIDE_PREFIX = "--gin."

# name -> (module in class_jax.commands, one-line help), in pipeline order.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "the whole method on the generated wiki, with a report (about 10 min on a laptop)"),
    "make-demo-wiki": ("make_demo_wiki", "generate the small multilingual demo wiki in real dump formats"),
    "ingest": ("ingest", "Wikipedia dump + langlinks/Wikidata -> articles, passages, entities"),
    "import-corpus": ("import_corpus", "published passage file (DPR psgs_w100 / CORA all_w100 .tsv) -> passages"),
    "mine": ("mine", "mine CLR-PT / MLQA-PT examples from an ingested corpus (Apache Beam)"),
    "build-fid": ("build_fid", "attach passages to mined records or questions: FiD example dirs"),
    "convert": ("convert", "import HF / T5X checkpoints, export to HF, verify parity"),
    "train": ("jobs", "train a model as configured by gin (resumes from MODEL_DIR)"),
    "eval": ("jobs", "evaluate a checkpoint on SeqIO tasks with seqio.Evaluator"),
    "infer": ("jobs", "decode a SeqIO split with a checkpoint into JSON lines"),
    "export": ("jobs", "write a params-only checkpoint from a training run"),
    "index": ("index", "encode a corpus into a retrieval index (resumable, multi-host)"),
    "retrieve": ("retrieve", "top-k passages for questions (XOR-Retrieve prediction format)"),
    "ask": ("ask", "answer one question: retrieve top-k from an index, read them with FiD"),
    "eval-xor-retrieve": ("eval_xor_retrieve", "XOR-Retrieve R@2kt / R@5kt (official)"),
    "eval-xor-full": ("eval_xor_full", "XOR-Full F1 / EM / BLEU (official)"),
    "eval-xor-engspan": ("eval_xor_engspan", "XOR-EnglishSpan F1 / EM (official)"),
    "eval-mkqa": ("eval_mkqa", "MKQA F1 (CLASS/CORA rule; Apple's metric)"),
}


def _top_level_help() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: class-jax COMMAND [ARGS...]", "",
             "CLASS cross-lingual open-domain QA in JAX: mine, train, index, evaluate.", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_text}" for name, (_, help_text) in COMMANDS.items()]
    lines += ["", "Run `class-jax COMMAND --help` for a command's arguments."]
    return "\n".join(lines)


def make_parser(command: str) -> tuple[ModuleType, argparse.ArgumentParser]:
    """Imports the module of `command` (a key of COMMANDS) and builds its argument parser.

    Returns:
        The command's module and its parser (which sets args.command to `command`).
    """
    module_name, help_text = COMMANDS[command]
    module = importlib.import_module(f"class_jax.commands.{module_name}")
    parser = argparse.ArgumentParser(prog=f"class-jax {command}", description=help_text)
    module.add_arguments(parser)
    parser.set_defaults(command=command)
    return module, parser


def rewrite_deprecated_flags(parser: argparse.ArgumentParser, args: Sequence[str]) -> list[str]:
    """Turns the old hyphenated spellings of flags (`--records-per-shard[=N]`) into the snake_case ones.

    Every flag is spelled in snake_case (as T5X spells them). For one release, `--foo-bar` and `--foo-bar=VALUE` are
    still accepted, with a one-line warning on stderr, when `--foo_bar` is an option of `parser` and `--foo-bar` is
    not. Values are never touched (an argument starting with `--` is an option to argparse, never a separate value;
    `--flag=--x-y` keeps its value), nor gin overrides (`--gin.NAME=VALUE`), nor anything after `--` (e.g. Apache
    Beam options of `class-jax mine`). Unknown flags are left for argparse to reject.

    Args:
        parser: the command's parser.
        args: the command's arguments (without the command name).

    Returns:
        `args` with the deprecated spellings replaced.
    """
    actions = parser._actions  # pylint: disable=protected-access  (argparse has no public list of its options)
    known = {option for action in actions for option in action.option_strings}
    rewritten = []
    for index, arg in enumerate(args):
        if arg == "--":
            rewritten.extend(args[index:])
            break
        name, equals, value = arg.partition("=")
        if name.startswith("--") and not name.startswith(GIN_OVERRIDE_PREFIX) and "-" in name[2:] and name not in known:
            new_name = "--" + name[2:].replace("-", "_")
            if new_name in known:
                print(f"{parser.prog}: warning: {name} is deprecated and will be removed; use {new_name}",
                      file=sys.stderr)
                arg = new_name + equals + value
        rewritten.append(arg)
    return rewritten


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script.

    Args:
        argv: command-line arguments without the program name; defaults to sys.argv[1:], in which case the process
            first re-executes itself with huge-page malloc (see `class_jax.runtime.host_malloc`).

    Returns:
        The process exit code.
    """
    if argv is None:
        # Only a real process start re-executes (not a call from tests or other Python code).
        host_malloc.reexec_with_huge_page_malloc()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_top_level_help())
        return 0
    command = argv[0]
    if command not in COMMANDS:
        print(f"class-jax: error: unknown command {command!r}\n\n{_top_level_help()}", file=sys.stderr)
        return 2
    module, parser = make_parser(command)
    args = parser.parse_args(rewrite_deprecated_flags(parser, argv[1:]))
    try:
        return int(module.run(args) or 0)
    except UserError as e:
        print(f"class-jax {command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
