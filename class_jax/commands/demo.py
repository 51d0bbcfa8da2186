"""`class-jax demo`: the whole CLASS method on the generated multilingual wiki, on a laptop CPU.

    class-jax demo                         # workdir/demo, the default preset (about 10 minutes on 2 cores)
    class-jax demo --workdir DIR --preset quick

Generates the wiki, trains a vocabulary, mines CLR-PT and MLQA-PT data, trains stage 1 (BM25 English teacher),
stage 2 (with passage refresh) and fine-tunes on the XOR-Full-style train set, evaluating each model on the held-out
dev questions; writes DIR/report.md, DIR/report.json and PNG plots. A rerun skips completed steps; Ctrl-C stops
training at a checkpoint, and the next run resumes there.
"""

import argparse
import os
import pathlib
import time

from class_jax.demo import console
from class_jax.demo.settings import PRESETS

DEFAULT_WORKDIR = "workdir/demo"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declares the command's flags."""
    parser.add_argument("--workdir", default=DEFAULT_WORKDIR,
                        help=f"where everything is written (default {DEFAULT_WORKDIR}); rerun to resume")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default",
                        help="default: the full demo; quick: a small wiki and a few steps per stage (tests)")


def _report(pipeline) -> dict:
    from class_jax.demo import ledger, pipeline as pipeline_lib, report  # pylint: disable=import-outside-toplevel

    sessions = pipeline.ledger.sessions()
    seconds = pipeline.ledger.step_seconds()
    peaks = [s.get("peak_memory_mb", {}) for s in sessions] + [ledger.peak_memory_mb()]
    content = {
        "settings": pipeline.settings.to_json(),
        "languages": list(pipeline.settings.target_languages),
        "resources": {
            "wall_seconds": round(sum(seconds.values()), 1),
            "step_seconds": {step.name: seconds[step.name] for step in pipeline.steps() if step.name in seconds},
            "sessions": len(sessions),
            "cpu_count": os.cpu_count(),
            "peak_memory_mb": {key: max(p.get(key, 0.0) for p in peaks) for key in ("process", "largest_child")},
        },
        "data": {name: pipeline.ledger.result(name) for name in ("wiki", "ingest", "mine", "fid_clr_pt",
                                                                    "fid_mlqa_pt", "fid_finetune")
                 if pipeline.ledger.done(name)},
        "training": report.training_summary({stage: report.read_loss_curve(pipeline.run_dir(stage))
                                             for stage in pipeline_lib.STAGE_GIN
                                             if pipeline.ledger.done(f"train_{stage}")}),
        "systems": {name: {"label": pipeline_lib.SYSTEMS[name], **result}
                    for name, result in pipeline.system_results().items()},
    }
    content["findings"] = report.findings(content["systems"], content["languages"])
    report.write_report(pipeline.workdir, content, pipeline_lib.SYSTEMS)
    return content


def _cache_compilations(workdir: pathlib.Path) -> None:
    """JAX's persistent compilation cache in DIR/jax_cache: the stages and evaluations compile the same programs
    (stage 2 and fine-tuning share a train step; every model is indexed and decoded alike), and a rerun compiles
    nothing again. Compiling is a large share of the demo's time on two cores."""
    import jax  # pylint: disable=import-outside-toplevel
    jax.config.update("jax_compilation_cache_dir", str((workdir / "jax_cache").absolute()))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def run(args: argparse.Namespace) -> int:
    """Runs (or resumes) the demo and writes its report.

    Raises:
      UserError: a work directory that holds something else, or bad input found on the way.
    """
    from class_jax.demo import pipeline as pipeline_lib  # pylint: disable=import-outside-toplevel
    from class_jax.runtime.preemption import PreemptionWatcher  # pylint: disable=import-outside-toplevel

    workdir = pathlib.Path(args.workdir)
    pipeline_lib.check_workdir(workdir)
    console.quiet_libraries(workdir)
    _cache_compilations(workdir)
    pipeline = pipeline_lib.DemoPipeline(workdir, PRESETS[args.preset])
    steps = pipeline.steps()
    print(f"class-jax demo ({args.preset} preset) in {pipeline.workdir}; library logs in "
          f"{pipeline.workdir / console.LOG_FILE}", flush=True)
    started = time.perf_counter()
    try:
        # Ctrl-C / SIGTERM only set a flag (shared with the trainer's own watcher): training checkpoints at its
        # next step, any other step finishes, and the demo stops there. A second Ctrl-C aborts at once.
        with PreemptionWatcher() as watcher:
            for index, step in enumerate(steps, 1):
                if pipeline.ledger.done(step.name):
                    console.step_line(index, len(steps), step.title, "done before, skipped")
                    continue
                step_started = time.perf_counter()
                if step.training is not None:
                    with console.training_bar(pipeline.run_dir(step.name.removeprefix("train_")),
                                              step.training.train_steps, step.title):
                        pipeline.ledger.run(step.name, step.fn)
                else:
                    pipeline.ledger.run(step.name, step.fn)
                console.step_line(index, len(steps), step.title, f"{time.perf_counter() - step_started:.1f} s")
                if watcher.requested and index < len(steps):
                    raise pipeline_lib.DemoInterrupted(f"stopped after step {index}")
    except (KeyboardInterrupt, pipeline_lib.DemoInterrupted) as e:
        pipeline.ledger.save()
        detail = f" ({e})" if str(e) else ""
        print(f"\ninterrupted{detail}; run the same command again to resume", flush=True)
        return 130
    content = _report(pipeline)
    pipeline.ledger.save()
    print(f"done in {time.perf_counter() - started:.0f} s; report: {pipeline.workdir / 'report.md'}")
    for finding in content["findings"]:
        print(f"  {'yes' if finding['holds'] else 'NO '}  {finding['claim']}: "
              + ", ".join(f"{k} {v}" for k, v in finding["figures"].items()))
    return 0
