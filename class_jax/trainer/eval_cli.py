"""`class-jax eval`: runs `class_jax.trainer.evaluate.evaluate` (seqio.Evaluator) as configured by gin."""

import argparse
import json

from class_jax.trainer import commands
from class_jax.trainer import metrics


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    results = commands.run_job(args, "class_jax.trainer.evaluate", "evaluate")
    print(json.dumps(metrics.flatten_eval_metrics(results), indent=2, sort_keys=True))
    return 0
