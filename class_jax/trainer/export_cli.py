"""`class-jax export`: a params-only checkpoint (params_io format) from a training run's checkpoint."""

import argparse

from class_jax.trainer import commands


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    print(commands.run_job(args, "class_jax.trainer.export", "export"))
    return 0
