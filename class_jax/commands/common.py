"""What the commands share: logging, multi-process start-up, gin flags, and the flags of commands that load a model.

Gin-configured jobs (`class-jax train|eval|infer|export`) get every argument from gin (T5X style), so their command
line is a list of gin files and overrides:

    class-jax train --gin_file=stages/finetune_xor_full.gin --gin.MODEL_DIR="'/tmp/xor'" --gin.TRAIN_STEPS=6000

Commands that read a params directory (`index`, `retrieve`, `ask`, `build-fid`) take `--checkpoint` / `--vocab`
and an optional sharding gin file.
"""

import argparse
import importlib
import logging
import sys
from typing import Any

from class_jax.runtime import distributed, gin_utils, partitioning
from class_jax.runtime.errors import UserError

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s] %(message)s"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def setup_logging(level: str) -> None:
    """class_jax logs at `level`; Orbax / absl / TensorFlow / faiss only warnings (they are very chatty at INFO)."""
    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT, stream=sys.stdout, force=True)
    logging.getLogger().setLevel(level)
    for noisy in ("absl", "jax", "orbax", "tensorflow", "jax._src.xla_bridge", "faiss"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def start_runtime(args: argparse.Namespace) -> None:
    """Logging, then the multi-process runtime from the flags.

    Raises:
      UserError: bad multi-process flags.
    """
    setup_logging(args.log_level)
    try:
        distributed.initialize(distributed.config_from_args(args))
    except ValueError as e:
        raise UserError(str(e)) from e


def add_job_arguments(parser: argparse.ArgumentParser) -> None:
    """Gin, multi-process and logging flags of a gin-configured job."""
    gin_utils.add_gin_arguments(parser)
    distributed.add_arguments(parser)
    parser.add_argument("--log_level", default="INFO", choices=LOG_LEVELS,
                        help="verbosity of class_jax's own messages (libraries log warnings and errors only)")


def run_job(args: argparse.Namespace, module_name: str, function_name: str) -> Any:
    """Starts logging and the multi-process runtime, parses gin, and calls the configured job function.

    Args:
      args: parsed flags.
      module_name: module of the job function, imported by its real path so gin files can name it.
      function_name: the job function.

    Returns:
      What the job function returns.

    Raises:
      UserError: bad multi-process flags or gin configuration.
    """
    start_runtime(args)
    module = importlib.import_module(module_name)
    gin_utils.parse_gin_from_args(args)
    return gin_utils.run_configured(getattr(module, function_name))


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--checkpoint, --vocab, sharding (gin), multi-process and logging flags of a command that loads a model."""
    parser.add_argument("--checkpoint", required=True,
                        help="a params directory (from `class-jax convert` or `class-jax export`)")
    parser.add_argument("--vocab", default=None,
                        help="sentencepiece model (default: the checkpoint's own spiece.model)")
    parser.add_argument("--log_level", default="INFO", choices=LOG_LEVELS)
    gin_utils.add_gin_arguments(parser)
    parser.description = ((parser.description or "") + ". The mesh and sharding rules come from an optional "
                          "--gin_file of gin/sharding/ (default: data parallel over every device).")
    distributed.add_arguments(parser)


def start_model_command(args: argparse.Namespace) -> partitioning.Partitioner:
    """Logging, the multi-process runtime, then the partitioner (from gin when --gin_file is given).

    Raises:
      UserError: bad multi-process flags or gin configuration.
    """
    start_runtime(args)
    bindings = [*args.gin_bindings, *getattr(args, "gin_overrides", [])]
    if not args.gin_file and not bindings:
        return partitioning.Partitioner()
    gin_utils.parse_gin(args.gin_file, bindings, args.gin_search_paths, check_macros=True)
    return gin_utils.run_configured(partitioning.Partitioner)
