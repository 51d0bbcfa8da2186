"""`class-jax train`: runs `class_jax.trainer.train.train` as configured by gin (resumes from MODEL_DIR)."""

import argparse
import logging

from class_jax.trainer import commands


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Gin, multi-process and logging flags (everything else comes from gin)."""
    commands.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Runs the training job configured by the flags' gin files and overrides.

    Returns:
      0 on success (bad gin input raises UserError, which the CLI prints as one line).
    """
    result = commands.run_job(args, "class_jax.trainer.train", "train")
    if result.preempted:
        logging.warning("Training stopped at step %d on request; rerun the same command to resume.", result.step)
    else:
        logging.info("Training finished at step %d.", result.step)
    return 0
