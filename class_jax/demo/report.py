"""The demo report: DIR/report.json (every figure), DIR/report.md (tables and findings) and PNG plots.

Findings are computed from the figures, never written by hand: for each claim of the demo (stage 1 beats the
untrained model and native-language BM25 on cross-lingual recall, fine-tuning lifts answer F1 in every language)
the report states whether this run shows it, with the numbers.
"""

import os
import pathlib
from typing import Any, Sequence

from class_jax.corpus import corpus_io
from class_jax.corpus.language_scripts import expected_scripts
from class_jax.trainer import metrics

PLOTS = {"losses": "plot_losses.png", "retrieval": "plot_retrieval.png", "answers": "plot_answers.png"}
HEADLINE_RECALL = "R@5"  # passage-count recall: sharper than R@2kt on the small demo corpus (see systems.py)


def read_loss_curve(run_dir: pathlib.Path) -> dict[str, list[float]]:
    """The logged losses of a training run (metrics.jsonl): {"step": [...], "loss": [...], "loss/<term>": [...]}."""
    curve: dict[str, list[float]] = {"step": []}
    # Skips a torn last line and records a resumed run logged again (see metrics.read_records).
    for record in metrics.read_records(run_dir / "metrics.jsonl"):
        if "loss" not in record:
            continue
        curve["step"].append(record["step"])
        for name, value in record.items():
            if name == "loss" or name.startswith("loss/"):
                curve.setdefault(name, []).append(value)
    return curve


def training_summary(curves: dict[str, dict[str, list[float]]]) -> dict[str, Any]:
    """Per stage: steps logged, first and last logged loss, and the curve."""
    summary = {}
    for stage, curve in curves.items():
        losses = curve.get("loss", [])
        summary[stage] = {"first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
                          "logged_steps": curve["step"][-1] if curve["step"] else 0, "curve": curve}
    return summary


def _recall(system: dict[str, Any] | None, lang: str, metric: str) -> float | None:
    if not system:
        return None
    return system["retrieval"]["per_language"].get(lang, {}).get(metric)


def clearly_above(after: float | None, before: float | None, questions: int) -> bool:
    """Whether a percentage rose by more than chance on `questions` questions: at least 5 points and at least two
    questions' worth (a dev language has a few dozen questions, so one question moves it by several points)."""
    if after is None or before is None or questions <= 0:
        return False
    return after - before >= max(5.0, 200.0 / questions)


def findings(systems: dict[str, Any], languages: Sequence[str]) -> list[dict[str, Any]]:
    """The demo's claims checked against this run's figures ("clearly above": see `clearly_above`)."""
    out = []
    untrained, bm25, stage1 = systems.get("untrained"), systems.get("bm25"), systems.get("clr_pt")
    if untrained and stage1:
        total = sum(r["questions"] for r in stage1["retrieval"]["per_language"].values())
        for metric in (HEADLINE_RECALL, "R@2kt"):
            before, after = untrained["retrieval"][metric], stage1["retrieval"][metric]
            out.append({"claim": f"stage 1 raises cross-lingual {metric} clearly above the untrained model",
                        "holds": clearly_above(after, before, total),
                        "figures": {"untrained": before, "clr_pt": after}})
    if bm25 and stage1:
        for lang in languages:
            if "Latin" in expected_scripts(lang) or lang not in stage1["retrieval"]["per_language"]:
                continue
            base, after = _recall(bm25, lang, HEADLINE_RECALL), _recall(stage1, lang, HEADLINE_RECALL)
            out.append({"claim": f"{lang}: stage 1 retrieves English passages clearly better than native-language "
                                 f"BM25 ({HEADLINE_RECALL})",
                        "holds": clearly_above(after, base, stage1["retrieval"]["per_language"][lang]["questions"]),
                        "figures": {"bm25": base, "clr_pt": after}})
    final = systems.get("finetune")
    if untrained and final:
        for lang in languages:
            scores = final["answers"]["per_language"].get(lang)
            if scores is None:
                continue
            base = untrained["answers"]["per_language"].get(lang, {}).get("f1")
            out.append({"claim": f"{lang}: fine-tuning lifts answer F1 clearly above the untrained model",
                        "holds": clearly_above(scores["f1"], base, scores["questions"]),
                        "figures": {"untrained": base, "finetune": scores["f1"],
                                    "answer in the reader's passages": scores["answer_in_passages"]}})
    return out


def _format(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def _retrieval_table(systems: dict[str, Any], labels: dict[str, str], languages: Sequence[str],
                     metric: str) -> list[str]:
    lines = [f"| system | {metric} (macro) | " + " | ".join(languages) + " |",
             "|---|---:|" + "---:|" * len(languages)]
    for name, result in systems.items():
        cells = [_format(_recall(result, lang, metric)) for lang in languages]
        lines.append(f"| {labels[name]} | {_format(result['retrieval'][metric])} | " + " | ".join(cells) + " |")
    return lines


def _answer_table(systems: dict[str, Any], labels: dict[str, str], languages: Sequence[str],
                  metric: str) -> list[str]:
    lines = [f"| system | {metric} (macro) | " + " | ".join(languages) + " |",
             "|---|---:|" + "---:|" * len(languages)]
    for name, result in systems.items():
        answers = result.get("answers")
        if answers:
            cells = [_format(answers["per_language"].get(lang, {}).get(metric)) for lang in languages]
            lines.append(f"| {labels[name]} | {_format(answers.get(metric))} | " + " | ".join(cells) + " |")
    return lines


def _copying_table(systems: dict[str, Any], labels: dict[str, str]) -> list[str]:
    """F1 where the reader can read a gold answer against F1 where it cannot (does the reader copy?)."""
    rows = [(name, result["answers"]["copying"]) for name, result in systems.items()
            if result.get("answers") and "copying" in result["answers"]]
    if not rows:
        return []
    lines = ["Does the reader copy? F1 (macro) of the questions whose answer the reader can read in its passages, "
             "against the rest: a reader that copies scores far higher on the first; one that answers from the "
             "question alone scores alike on both.", "",
             "| system | F1, answer readable | questions | F1, answer not readable | questions |",
             "|---|---:|---:|---:|---:|"]
    for name, copying in rows:
        shown, hidden = copying["answer_readable"], copying["answer_not_readable"]
        lines.append(f"| {labels[name]} | {_format(shown['f1'])} | {shown['questions']} | {_format(hidden['f1'])} | "
                     f"{hidden['questions']} |")
    return lines + [""]


def write_plots(workdir: pathlib.Path, report: dict[str, Any], labels: dict[str, str]) -> dict[str, str]:
    """Loss curves per stage, recall per language and system, answer F1 per language and system."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    import numpy as np  # pylint: disable=import-outside-toplevel

    written = {}
    training = report["training"]
    if training:
        figure, axes = plt.subplots(1, len(training), figsize=(5 * len(training), 3.6), squeeze=False)
        for axis, (stage, summary) in zip(axes[0], training.items()):
            curve = summary["curve"]
            for name, values in curve.items():
                if name != "step":
                    axis.plot(curve["step"], values, label=name, linewidth=2 if name == "loss" else 1)
            axis.set_title(stage)
            axis.set_xlabel("step")
            axis.set_yscale("log")
            axis.legend(fontsize=7)
        figure.tight_layout()
        figure.savefig(workdir / PLOTS["losses"], dpi=100)
        plt.close(figure)
        written["losses"] = PLOTS["losses"]

    languages = report["languages"]
    systems = report["systems"]

    def bars(kind: str, metric_of, title: str, file_key: str) -> None:
        shown = {name: result for name, result in systems.items() if result.get(kind)}
        if not shown:
            return
        figure, axis = plt.subplots(figsize=(max(6, 1.4 * len(languages)), 3.8))
        width = 0.8 / len(shown)
        positions = np.arange(len(languages))
        for i, (name, result) in enumerate(shown.items()):
            values = [metric_of(result, lang) or 0.0 for lang in languages]
            axis.bar(positions + i * width, values, width, label=labels[name])
        axis.set_xticks(positions + width * (len(shown) - 1) / 2, languages)
        axis.set_title(title)
        axis.set_ylabel("%")
        axis.legend(fontsize=7)
        figure.tight_layout()
        figure.savefig(workdir / PLOTS[file_key], dpi=100)
        plt.close(figure)
        written[file_key] = PLOTS[file_key]

    bars("retrieval", lambda r, lang: _recall(r, lang, HEADLINE_RECALL),
         f"cross-lingual retrieval, {HEADLINE_RECALL} (dev questions -> English passages)", "retrieval")
    bars("answers", lambda r, lang: r["answers"]["per_language"].get(lang, {}).get("f1"),
         "answer F1 (dev questions, multilingual passages)", "answers")
    return written


def write_report(workdir: pathlib.Path, report: dict[str, Any], labels: dict[str, str]) -> None:
    """Writes report.json, the plots and report.md (atomically each)."""
    report["plots"] = write_plots(workdir, report, labels)
    corpus_io.write_json(workdir / "report.json", report)
    with corpus_io.atomic_write(workdir / "report.md") as out:
        out.write(render_markdown(report, labels))


def render_markdown(report: dict[str, Any], labels: dict[str, str]) -> str:
    """The human-readable report."""
    languages, systems, resources = report["languages"], report["systems"], report["resources"]
    lines = [f"# class-jax demo report ({report['settings']['preset']} preset)", "",
             "The whole CLASS method on the generated multilingual wiki: mining, stage 1 (CLR-PT, BM25 English "
             "teacher), stage 2 (MLQA-PT with passage refresh), fine-tuning on the XOR-Full-style train set, each "
             "model scored on the held-out dev questions.", "",
             "## Resources", "",
             f"- wall time: {resources['wall_seconds']:.0f} s of steps ({resources['sessions']} session(s); "
             f"{resources['cpu_count']} CPU cores)",
             f"- peak memory: {resources['peak_memory_mb']['process']:.0f} MiB (this process), "
             f"{resources['peak_memory_mb']['largest_child']:.0f} MiB (largest child process)", "",
             "| step | seconds |", "|---|---:|"]
    lines += [f"| {name} | {seconds:.1f} |" for name, seconds in resources["step_seconds"].items()]
    lines += ["", "## Findings", ""]
    for finding in report["findings"]:
        figures = ", ".join(f"{k} {_format(v)}" for k, v in finding["figures"].items())
        lines.append(f"- {'✅' if finding['holds'] else '❌'} {finding['claim']} ({figures})")
    lines += ["", "## Cross-lingual retrieval (dev questions against English passages)", "",
              "R@2kt / R@5kt: the official XOR-Retrieve metric (answer span in the first 2,000 / 5,000 tokens). "
              "R@n: the same answer test over the top n passages.", ""]
    for metric in (HEADLINE_RECALL, "R@2kt"):
        lines += _retrieval_table(systems, labels, languages, metric) + [""]
    lines += ["## Answers (dev questions, top-k multilingual passages, greedy decoding)", "",
              "answer_in_passages: questions with a gold answer in what the reader reads of the k passages the "
              "system retrieved (each cut to the model's passage length): the ceiling of copying.", ""]
    for metric in ("f1", "em", "answer_in_passages"):
        lines += _answer_table(systems, labels, languages, metric) + [""]
    lines += _copying_table(systems, labels)
    lines += ["## Training", "", "| stage | steps | first logged loss | last logged loss |", "|---|---:|---:|---:|"]
    for stage, summary in report["training"].items():
        lines.append(f"| {stage} | {summary['logged_steps']} | {_format(summary['first_loss'])} | "
                     f"{_format(summary['last_loss'])} |")
    lines += [""] + [f"![{key}]({file})" for key, file in report["plots"].items()] + [""]
    return "\n".join(lines)
