"""`class-jax infer`: runs `class_jax.trainer.infer.infer` (predictions as JSONL) as configured by gin."""

import argparse

from class_jax.trainer import commands


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    for path in commands.run_job(args, "class_jax.trainer.infer", "infer"):
        print(path)
    return 0
