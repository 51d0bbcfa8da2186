"""`class-jax eval-xor-engspan`: XOR-EnglishSpan F1 / EM, as the official XOR-EnglishSpan script."""

import argparse

from class_jax.evaluation import files, xor_engspan
from class_jax.commands import scorer_output


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the official script's flags (and ours)."""
    parser.add_argument("--data_file", required=True,
                        help="gold file with English span answers, e.g. xor_dev_retrieve_eng_span_v1_1.jsonl")
    parser.add_argument("--pred_file", required=True,
                        help='JSON object {question id: answer string or {"answer": string}}')
    scorer_output.add_allow_unknown_ids(parser)


def run(args: argparse.Namespace) -> int:
    """Scores the predictions and prints the report.

    Raises:
        UserError: for unreadable or malformed files, unknown ids or languages.
    """
    gold = files.load_gold_questions(args.data_file)
    predictions = files.load_answer_predictions(args.pred_file, allow_answer_objects=True)
    report = xor_engspan.score_xor_engspan(gold, predictions, allow_unknown_ids=args.allow_unknown_ids,
                                           gold_source=args.data_file)
    scorer_output.report(xor_engspan.format_official_report(report), report.to_dict(), report.coverage)
    return 0
