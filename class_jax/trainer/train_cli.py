"""`class-jax train`: runs `class_jax.trainer.train.train` as configured by gin (resumes from MODEL_DIR)."""

import argparse
import logging

from class_jax.trainer import commands


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    result = commands.run_job(args, "class_jax.trainer.train", "train")
    if result.preempted:
        logging.warning("Training stopped at step %d on request; rerun the same command to resume.", result.step)
    else:
        logging.info("Training finished at step %d.", result.step)
    return 0
