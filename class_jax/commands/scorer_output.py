"""What every evaluation command shares: common flags and the output layout.

Layout: the official script's figures on stdout, then the clearly labelled corrected variants, then one final
JSON line with everything; coverage (missing / duplicate / unknown predictions) goes to stderr, apart from
the scores.
"""

import argparse
import json
import math
import sys
from typing import Any, Iterable

from class_jax.evaluation.records import Coverage


def add_allow_unknown_ids(parser: argparse.ArgumentParser) -> None:
    """Adds --allow_unknown_ids (by default a prediction id missing from the gold data is an error)."""
    parser.add_argument("--allow_unknown_ids", action="store_true",
                        help="skip and count prediction ids that are not in the gold data instead of failing")


def json_safe(value: Any) -> Any:
    """Replaces NaN and infinities (which JSON cannot hold) by null, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def report(figure_lines: Iterable[str], summary: dict, coverage: Coverage | None = None,
           notes: Iterable[str] = ()) -> None:
    """Prints a command's output: figures, coverage and notes (stderr), then the JSON summary line.

    Args:
        figure_lines: the score lines (official first, corrected after).
        summary: everything, for the final JSON line.
        coverage: the coverage report, printed on stderr.
        notes: other remarks for the user (stderr).
    """
    for line in figure_lines:
        print(line)
    for line in [*(coverage.summary_lines() if coverage else []), *notes]:
        print(line, file=sys.stderr)
    sys.stdout.flush()
    print(json.dumps(json_safe(summary), ensure_ascii=False))
