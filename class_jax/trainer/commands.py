"""What `class-jax train|eval|infer|export` share: flags, logging, multi-process start-up, gin, running the job.

Each command module (train_cli, eval_cli, infer_cli, export_cli) names its gin-configured function; the function
gets every argument from gin (T5X style), so a command line is a list of gin files and overrides:

    class-jax train --gin_file=stages/finetune_xor.gin --gin.MODEL_DIR="'/tmp/xor'" --gin.TRAIN_STEPS=6000
"""

import argparse
import importlib
import logging
import sys
from typing import Any

from class_jax.trainer import distributed
from class_jax.trainer import gin_utils

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s] %(message)s"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Gin, multi-process and logging flags."""
    gin_utils.add_gin_arguments(parser)
    distributed.add_arguments(parser)
    parser.add_argument("--log_level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                        help="verbosity of class_jax's own messages (libraries log warnings and errors only)")


def setup_logging(level: str) -> None:
    """class_jax logs at `level`; Orbax / absl / TensorFlow only warnings (they are very chatty at INFO)."""
    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT, stream=sys.stdout, force=True)
    logging.getLogger().setLevel(level)
    for noisy in ("absl", "jax", "orbax", "tensorflow", "jax._src.xla_bridge"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_job(args: argparse.Namespace, module_name: str, function_name: str) -> Any:
    """Starts logging and the multi-process runtime, parses gin, and calls the configured job function.

    Args:
      args: parsed flags.
      module_name: module of the job function, imported by its real path so gin files can name it.
      function_name: the job function.

    Returns:
      What the job function returns.
    """
    setup_logging(args.log_level)
    try:
        distributed.initialize(distributed.config_from_args(args))
    except ValueError as e:
        from class_jax.errors import UserError  # pylint: disable=import-outside-toplevel
        raise UserError(str(e)) from e
    module = importlib.import_module(module_name)
    gin_utils.parse_gin_from_args(args)
    return gin_utils.run_configured(getattr(module, function_name))
