"""`class-jax eval-mkqa`: MKQA as CLASS / CORA papers score it ("cora") and/or Apple's official metric ("apple").

Gold: the original MKQA file (`mkqa.jsonl.gz`: example_id, queries, answers; both metrics) or XOR-format files
such as MIA-2022's `mkqa-LANG.jsonl` (already converted: "cora" only).

Predictions, one file per language: Apple's official JSON Lines (`LANG.jsonl`, records with example_id,
prediction, binary_answer, no_answer_prob) or CORA's `{id: answer}` object (`LANG.json`); either a folder of them
(`--pred_dir`) or one file with `--language`.
"""

import argparse
import os
import pathlib

from class_jax.runtime.errors import UserError
from class_jax.evaluation import files, mkqa, mkqa_apple, xor_full
from class_jax.commands import scorer_output
from class_jax.evaluation.records import MkqaPrediction

METRICS = ("cora", "apple", "both")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the command's flags."""
    parser.add_argument("--data_file", required=True, nargs="+",
                        help="original MKQA JSON Lines (plain or .gz), or XOR-format files (e.g. mkqa-ja.jsonl)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--pred_dir", help="folder with one prediction file per language: LANG.jsonl or LANG.json")
    source.add_argument("--pred_file", help="predictions of one language (needs --language)")
    parser.add_argument("--language", help="the language of --pred_file")
    parser.add_argument("--languages", nargs="+",
                        help="languages to score (default: all in the gold data; with --pred_file, --language)")
    parser.add_argument("--metric", choices=METRICS,
                        help="cora: XOR-Full scorer on converted data, macro over languages (CLASS / CORA papers); "
                             "apple: Apple's official metric (best no-answer threshold); both (default for the "
                             "original MKQA file; XOR-format gold allows cora only)")
    scorer_output.add_allow_unknown_ids(parser)


def _load_gold(paths: list[str], languages: list[str] | None):
    """(original MKQA records or None, XOR-format questions, ids dropped by the conversion, notes)."""
    kinds = {path: mkqa.is_original_mkqa_file(path) for path in paths}
    if len(set(kinds.values())) > 1:
        raise UserError(f"--data_file mixes original MKQA files and XOR-format files: {kinds}")
    if next(iter(kinds.values())):
        records = [record for path in paths for record in mkqa.load_mkqa_records(path)]
        converted = mkqa.convert_to_xor(records, languages)
        dropped = converted.dropped_without_answer
        notes = [f"conversion: {sum(len(ids) for ids in dropped.values())} (question, language) pairs without "
                 "answer text dropped, as CORA does: "
                 + ", ".join(f"{lang} {len(ids)}" for lang, ids in dropped.items() if ids)]
        return records, converted.questions, dropped, notes
    questions = [q for path in paths for q in files.load_gold_questions(path)]
    unknown = sorted({q.lang for q in questions} - set(mkqa.MKQA_LANGUAGES))
    if unknown:
        first = next(q for q in questions if q.lang in unknown)
        raise UserError(f"{', '.join(paths)}: line {first.line} (id {first.id!r}): unknown MKQA language "
                        f"{first.lang!r}")
    if languages is not None:
        questions = [q for q in questions if q.lang in languages]
    return None, questions, {}, []


def _prediction_files(args: argparse.Namespace, languages: list[str]) -> dict[str, pathlib.Path]:
    if args.pred_file:
        if args.language not in languages:
            raise UserError(f"--language {args.language!r} is not among the scored languages {languages}")
        return {args.language: pathlib.Path(args.pred_file)}
    folder = pathlib.Path(args.pred_dir)
    try:
        is_folder = folder.is_dir()
    except (OSError, ValueError) as e:  # a name too long, an embedded NUL, ...
        raise UserError(f"{files.display_path(folder)}: not a usable folder: {getattr(e, 'strerror', None) or e}"
                        ) from e
    if not is_folder:
        raise UserError(f"{files.display_path(folder)}: no such folder")
    found = {}
    for lang in languages:
        # Any entry of that name counts (a broken link or a folder too): reading it then says what is wrong with it.
        candidates = [path for path in (folder / f"{lang}.jsonl", folder / f"{lang}.json") if os.path.lexists(path)]
        if len(candidates) > 1:
            raise UserError(f"{folder}: both {lang}.jsonl and {lang}.json exist; keep one")
        if candidates:
            found[lang] = candidates[0]
    if not found:
        raise UserError(f"{folder}: no prediction file LANG.jsonl or LANG.json for any of {languages}")
    return found


def run(args: argparse.Namespace) -> int:
    """Scores the predictions with the chosen metric(s) and prints the reports.

    Raises:
        UserError: for unreadable or malformed files, unknown ids or languages, or a metric the gold cannot give.
    """
    if args.pred_file:
        if not args.language:
            raise UserError("--pred_file needs --language (the language its predictions are in)")
        # One prediction file scores its own language unless --languages says otherwise.
        args.languages = args.languages or [args.language]
    for lang in [*(args.languages or []), *([args.language] if args.language else [])]:
        if lang not in mkqa.MKQA_LANGUAGES:
            raise UserError(f"unknown MKQA language {lang!r}; known: {', '.join(mkqa.MKQA_LANGUAGES)}")
    records, questions, dropped, notes = _load_gold(args.data_file, args.languages)
    gold_source = ", ".join(args.data_file)
    metric = args.metric or ("both" if records is not None else "cora")
    if metric != "cora" and records is None:
        raise UserError(f"{gold_source}: Apple's metric needs the original MKQA records (with their unanswerable "
                        "questions); these files are in XOR format: use --metric cora")
    if args.languages:
        languages = list(args.languages)
    else:
        present = ({lang for r in records for lang in r.queries} if records is not None
                   else {q.lang for q in questions})
        languages = [lang for lang in mkqa.MKQA_LANGUAGES if lang in present]
    paths = _prediction_files(args, languages)
    predictions: dict[str, dict[str, MkqaPrediction]] = {}
    duplicates: dict[str, tuple[str, ...]] = {}
    for lang, path in paths.items():
        predictions[lang], duplicates[lang] = files.load_mkqa_predictions(path)
    sources = {lang: str(path) for lang, path in paths.items()}
    without = [lang for lang in languages if lang not in paths]

    lines, summary, coverages = [], {"metric": f"mkqa_{metric}"}, []
    if metric in ("cora", "both"):
        report = mkqa.score_mkqa_cora(
            questions, {lang: {i: p.answer_text for i, p in by_id.items()} for lang, by_id in predictions.items()},
            duplicate_prediction_ids=duplicates, dropped_ids=dropped, allow_unknown_ids=args.allow_unknown_ids,
            gold_source=gold_source, prediction_sources=sources)
        lines += ["== MKQA as CLASS / CORA score it (XOR-Full rule, macro over languages) =="]
        lines += mkqa.format_official_report(report)
        lines += xor_full.format_corrected_report(report)
        summary["cora"] = report.to_dict()
        coverages.append(report.coverage)
        if without:
            notes.append(f"cora: no prediction file for {', '.join(without)}: their questions score 0")
    if metric in ("apple", "both"):
        apple = mkqa_apple.score_mkqa_apple(
            records, predictions, duplicate_prediction_ids=duplicates, allow_unknown_ids=args.allow_unknown_ids,
            gold_source=gold_source, prediction_sources=sources)
        lines += ["== Apple's official MKQA metric =="]
        lines += mkqa_apple.format_official_report(apple)
        lines += mkqa_apple.format_corrected_report(apple)
        summary["apple"] = apple.to_dict()
        if metric == "apple":
            coverages.append(apple.coverage)
        if len(apple.per_language) < len(mkqa.MKQA_LANGUAGES):
            notes.append(f"apple: macro average over the {len(apple.per_language)} languages with predictions; "
                         f"the official MKQA figure needs all {len(mkqa.MKQA_LANGUAGES)}")
    scorer_output.report(lines, summary, coverages[0], notes)
    return 0

