"""`class-jax eval-xor-retrieve`: R@2kt / R@5kt of retrieved passages, as the official XOR-Retrieve script."""

import argparse

from class_jax.evaluation import files, xor_retrieve
from class_jax.commands import scorer_output


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the official script's flags (and a few of ours)."""
    parser.add_argument("--data_file", required=True,
                        help="gold XOR-Retrieve file (JSON Lines with id, lang, answers), e.g. "
                             "xor_dev_retrieve_eng_span_v1_1.jsonl")
    parser.add_argument("--pred_file", required=True,
                        help='JSON array of {"id", "lang", "ctxs": [passage text, ...]} in rank order')
    parser.add_argument("--token_budgets", type=int, nargs="+", default=list(xor_retrieve.OFFICIAL_TOKEN_BUDGETS),
                        help="token budgets to report (default: 2000 5000, i.e. R@2kt and R@5kt)")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes that tokenise passages (NLTK is slow: ~10M tokens for the dev set at R@5kt)")
    scorer_output.add_allow_unknown_ids(parser)


def run(args: argparse.Namespace) -> int:
    """Scores the predictions and prints the report.

    Raises:
        UserError: for unreadable or malformed files, unknown ids or languages.
    """
    gold = files.load_gold_questions(args.data_file)
    predictions = files.load_retrieval_predictions(args.pred_file)
    result = xor_retrieve.score_xor_retrieve(
        gold, predictions, token_budgets=args.token_budgets, allow_unknown_ids=args.allow_unknown_ids,
        gold_source=args.data_file, prediction_source=args.pred_file, workers=args.workers, progress=True)
    scorer_output.report(xor_retrieve.format_official_report(result) + xor_retrieve.format_corrected_report(result),
                  result.to_dict(), result.coverage)
    return 0
