"""`class-jax demo --preset quick` end to end in a subprocess (as a user runs it), interrupted once and resumed."""

import json
import os
import pathlib
import signal
import subprocess
import sys

import pytest

from class_jax.demo import ledger
from class_jax.runtime.errors import UserError


def _environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one CPU device, as on a laptop


def _command(workdir: pathlib.Path) -> list[str]:
    return [sys.executable, "-m", "class_jax.cli", "demo", "--workdir", str(workdir), "--preset", "quick"]


def _run_demo(workdir: pathlib.Path) -> subprocess.CompletedProcess:
    return subprocess.run(_command(workdir), capture_output=True, text=True, env=_environment(), timeout=1200,
                          check=False)


def _interrupt_after(workdir: pathlib.Path, marker: str) -> tuple[int, str]:
    """Starts the demo and sends it SIGINT (Ctrl-C) once its output shows `marker`."""
    process = subprocess.Popen(_command(workdir), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env=_environment())
    seen = []
    for line in process.stdout:
        seen.append(line)
        if marker in line:
            process.send_signal(signal.SIGINT)
            break
    seen.append(process.stdout.read())
    return process.wait(timeout=600), "".join(seen)


def test_quick_demo_trains_every_stage_and_writes_the_report(tmp_path):
    workdir = tmp_path / "demo"
    # Ctrl-C once stage-1 training has started (in the trainer, or still compiling) ...
    returncode, output = _interrupt_after(workdir, "[ 8/19]")
    assert returncode == 130, output
    assert "run the same command again to resume" in output
    state = json.loads((workdir / ledger.STATE_FILE).read_text())
    assert {"wiki", "ingest", "vocab", "mine", "fid_clr_pt", "params_untrained", "eval_untrained",
            "eval_bm25"} <= set(state["steps"])
    completed = len(state["steps"])

    # ... then resumed: the completed steps are skipped, the rest runs to the report.
    second = _run_demo(workdir)
    assert second.returncode == 0, second.stdout + second.stderr[-3000:]
    assert second.stdout.count("done before, skipped") == completed

    report = json.loads((workdir / "report.json").read_text())
    assert set(report["systems"]) == {"untrained", "bm25", "clr_pt", "mlqa_pt", "finetune"}
    for stage in ("clr_pt", "mlqa_pt", "finetune"):
        summary = report["training"][stage]
        assert summary["last_loss"] < summary["first_loss"], (stage, summary)
    for name, system in report["systems"].items():
        assert {"R@2kt", "R@5kt", "R@1", "R@5", "per_language"} <= set(system["retrieval"]), name
        assert (system["answers"] is None) == (name == "bm25")
    assert set(report["systems"]["finetune"]["answers"]["per_language"]) <= set(report["languages"])
    copying = report["systems"]["finetune"]["answers"]["copying"]
    assert copying["answer_readable"]["questions"] + copying["answer_not_readable"]["questions"] == sum(
        scores["questions"] for scores in report["systems"]["finetune"]["answers"]["per_language"].values())
    assert report["resources"]["wall_seconds"] > 0 and report["resources"]["peak_memory_mb"]["process"] > 0
    assert report["findings"] and all(isinstance(f["holds"], bool) for f in report["findings"])
    for plot in report["plots"].values():
        assert (workdir / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (workdir / "report.md").read_text()
    assert "## Cross-lingual retrieval" in markdown and "after stage 1 (CLR-PT)" in markdown
    assert "Does the reader copy?" in markdown

    # A rerun of a finished demo does nothing but rewrite the report.
    third = _run_demo(workdir)
    assert third.returncode == 0 and third.stdout.count("done before, skipped") == 19


def test_ledger_records_steps_and_refuses_other_settings(tmp_path):
    book = ledger.Ledger(tmp_path, {"preset": "quick", "recall_at": (1, 5)})
    calls = []
    assert book.run("a", lambda: calls.append(1) or {"x": 1}) == ({"x": 1}, True)
    reopened = ledger.Ledger(tmp_path, {"preset": "quick", "recall_at": (1, 5)})
    assert reopened.done("a") and reopened.run("a", lambda: calls.append(2)) == ({"x": 1}, False)
    assert calls == [1] and len(reopened.sessions()) == 2
    with pytest.raises(UserError, match="other settings"):
        ledger.Ledger(tmp_path, {"preset": "default"})


def test_a_failed_step_is_not_recorded(tmp_path):
    book = ledger.Ledger(tmp_path, {})

    def fail():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        book.run("a", fail)
    assert not ledger.Ledger(tmp_path, {}).done("a")
