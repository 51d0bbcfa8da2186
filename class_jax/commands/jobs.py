"""`class-jax train|eval|infer|export`: the gin-configured jobs of `class_jax.trainer`, run as T5X runs them.

Each job is one gin-configurable function that takes every argument from gin; the command only starts the runtime,
parses the gin files and overrides, calls the function and prints what it returned.
"""

import argparse
import json
import logging
from typing import Any, Callable, NamedTuple

from class_jax.commands import common
from class_jax.runtime.errors import UserError


class Job(NamedTuple):
    """A gin-configured job: where its function lives, how its result is reported, and whether it reads a checkpoint
    whose tasks must tokenise as that checkpoint was trained (`checkpoint_path`)."""

    module: str
    function: str
    report: Callable[[Any], None]
    reads_checkpoint: bool = False


def _report_train(result: Any) -> None:
    if result.preempted:
        logging.warning("Training stopped at step %d on request; rerun the same command to resume.", result.step)
    elif result.state is None:
        logging.info("Dry run: the memory estimate above; nothing was trained.")
    else:
        logging.info("Training finished at step %d.", result.step)


def _report_eval(results: Any) -> None:
    from class_jax.trainer import metrics  # pylint: disable=import-outside-toplevel  (pulls in TensorFlow)
    print(json.dumps(metrics.flatten_eval_metrics(results), indent=2, sort_keys=True))


def _report_infer(paths: Any) -> None:
    for path in paths:
        print(path)


JOBS: dict[str, Job] = {
    "train": Job("class_jax.trainer.train", "train", _report_train),
    "eval": Job("class_jax.trainer.evaluate", "evaluate", _report_eval, reads_checkpoint=True),
    "infer": Job("class_jax.trainer.infer", "infer", _report_infer, reads_checkpoint=True),
    "export": Job("class_jax.trainer.export", "export", print),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Gin, multi-process and logging flags (everything else comes from gin)."""
    common.add_job_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Runs the job named by `args.command` as configured by the flags' gin files and overrides.

    Returns:
      0 on success (bad gin input raises UserError, which the CLI prints as one line).
    """
    job = JOBS[args.command]
    if job.reads_checkpoint:
        # Gin knows a dynamically registered job by the alias its gin file imports it under; the function name
        # alone selects it (an ambiguous name finds no binding, and nothing is added).
        args.gin_bindings = [*args.gin_bindings, *_checkpoint_input_bindings(args, job.function)]
    job.report(common.run_job(args, job.module, job.function))
    return 0


def _checkpoint_input_bindings(args: argparse.Namespace, selector: str) -> list[str]:
    """`NORMALIZE_QUERIES = True` when the checkpoint the job reads was trained on normalised queries.

    A released CLASS checkpoint records `normalize_queries` in its imported model_config.json; the SeqIO tasks
    tokenise before the job opens the checkpoint, so the macro is set here, before the configuration is final.
    A value the command line gives for NORMALIZE_QUERIES wins; configurations without FiD tasks (no
    NORMALIZE_QUERIES macro in use) are left alone.
    """
    from class_jax.checkpoints import params_io  # pylint: disable=import-outside-toplevel
    from class_jax.runtime import gin_utils  # pylint: disable=import-outside-toplevel

    overrides = [*args.gin_bindings, *getattr(args, "gin_overrides", [])]
    if not args.gin_file or any(binding.strip().startswith("NORMALIZE_QUERIES") for binding in overrides):
        return []
    with gin_utils.scoped_config(args.gin_file, overrides, args.gin_search_paths, finalize=False):
        _, used_macros = gin_utils.macro_usage()
        try:
            path = gin_utils.configured_argument(selector, "checkpoint_path")
        except UserError:
            return []
    if "NORMALIZE_QUERIES" not in used_macros or not isinstance(path, str) or not params_io.is_checkpoint_dir(path):
        return []
    if not getattr(params_io.load_config(path), "normalize_queries", False):
        return []
    logging.info("%s was trained on normalised queries: tokenising with NORMALIZE_QUERIES = True.", path)
    return ["NORMALIZE_QUERIES = True"]
