"""`class-jax export`: a params-only checkpoint (params_io format) from a training run's checkpoint."""

import argparse

from class_jax.trainer import commands


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Gin, multi-process and logging flags (everything else comes from gin)."""
    commands.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Runs the export job configured by the flags' gin files and overrides.

    Returns:
      0 on success (bad gin input raises UserError, which the CLI prints as one line).
    """
    print(commands.run_job(args, "class_jax.trainer.export", "export"))
    return 0
