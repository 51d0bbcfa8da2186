"""`class-jax infer`: runs `class_jax.trainer.infer.infer` (predictions as JSONL) as configured by gin."""

import argparse

from class_jax.trainer import commands


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Gin, multi-process and logging flags (everything else comes from gin)."""
    commands.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Runs the inference job configured by the flags' gin files and overrides.

    Returns:
      0 on success (bad gin input raises UserError, which the CLI prints as one line).
    """
    for path in commands.run_job(args, "class_jax.trainer.infer", "infer"):
        print(path)
    return 0
