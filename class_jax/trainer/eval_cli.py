"""`class-jax eval`: runs `class_jax.trainer.evaluate.evaluate` (seqio.Evaluator) as configured by gin."""

import argparse
import json

from class_jax.trainer import commands
from class_jax.trainer import metrics


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Gin, multi-process and logging flags (everything else comes from gin)."""
    commands.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Runs the evaluation job configured by the flags' gin files and overrides.

    Returns:
      0 on success (bad gin input raises UserError, which the CLI prints as one line).
    """
    results = commands.run_job(args, "class_jax.trainer.evaluate", "evaluate")
    print(json.dumps(metrics.flatten_eval_metrics(results), indent=2, sort_keys=True))
    return 0
