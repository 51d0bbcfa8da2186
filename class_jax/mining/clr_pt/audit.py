"""Estimating the CLR-PT rule's precision on real Wikipedia: a reproducible sample to label by hand, and its score.

The demo wiki knows its facts, real Wikipedia does not, so precision there is measured the classic way: label a
random sample. `class-jax mine` writes OUT/clr_pt_audit/<lang>.tsv with up to N mined pairs per language, chosen
by the smallest sha1(qid) (a uniform sample that a rerun reproduces exactly). A reviewer who reads both languages
fills the `parallel` column with y or n; then

    python -m class_jax.mining.clr_pt.audit OUT/clr_pt_audit/*.tsv

prints precision per file with a 95% Wilson interval (200 labels give about +-5 points at 90% precision).
"""

import argparse
import csv
import hashlib
import heapq
import io
import math
import sys
from typing import Iterable, Mapping, Sequence

from class_jax.runtime.errors import UserError

COLUMNS = ("qid", "parallel", "parallel_score", "answer", "target_answer", "english_sentence", "target_sentence")


def _marked(cloze: str, answer: str, mask: str) -> str:
    """The sentence with the answer back in place, bracketed so the reviewer sees what was masked."""
    return cloze.replace(mask, f"[[{answer}]]", 1)


def audit_sample(records: Iterable[Mapping], size: int) -> list[Mapping]:
    """The `size` records with the smallest sha1(qid): a uniform, reproducible sample (streams, O(size) memory)."""
    return heapq.nsmallest(size, records, key=lambda record: hashlib.sha1(record["qid"].encode("utf-8")).hexdigest())


def audit_table(records: Sequence[Mapping], mask: str) -> str:
    """The sample as TSV text with an empty `parallel` column to fill in (y / n)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t", lineterminator="\n")
    writer.writerow(COLUMNS)
    for record in records:
        writer.writerow([record["qid"], "", record["parallel_score"], record["answer"], record["target_answer"],
                         _marked(record["english_cloze"], record["answer"], mask),
                         _marked(record["target_cloze"], record["target_answer"], mask)])
    return buffer.getvalue()


def wilson_interval(successes: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion (sound for small samples and proportions near 1)."""
    if total == 0:
        return 0.0, 1.0
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return max(0.0, centre - half), min(1.0, centre + half)


def score_audit(text: str, name: str) -> dict:
    """Precision of one labelled audit table.

    Args:
      text: the TSV text.
      name: the file name, for error messages.

    Returns:
      {"labelled", "parallel", "unlabelled", "precision", "low", "high"} (precision None without labels).

    Raises:
      UserError: a row has the wrong number of fields or a label other than y / n / empty.
    """
    rows = csv.reader(io.StringIO(text), delimiter="\t")
    header = next(rows, None)
    if header is None or tuple(header) != COLUMNS:
        raise UserError(f"{name}: line 1: expected the header {' '.join(COLUMNS)}")
    yes = no = unlabelled = 0
    for line_number, row in enumerate(rows, start=2):
        if len(row) != len(COLUMNS):
            raise UserError(f"{name}: line {line_number}: {len(row)} fields, expected {len(COLUMNS)}")
        label = row[1].strip().lower()
        if label in ("y", "yes"):
            yes += 1
        elif label in ("n", "no"):
            no += 1
        elif not label:
            unlabelled += 1
        else:
            raise UserError(f"{name}: line {line_number}: label {row[1]!r}; use y, n or leave it empty")
    low, high = wilson_interval(yes, yes + no)
    return {"labelled": yes + no, "parallel": yes, "unlabelled": unlabelled,
            "precision": yes / (yes + no) if yes + no else None, "low": low, "high": high}


def main(argv: Sequence[str] | None = None) -> int:
    """Prints the precision of labelled audit tables."""
    parser = argparse.ArgumentParser(description="precision of hand-labelled CLR-PT audit tables")
    parser.add_argument("tables", nargs="+", help="OUT/clr_pt_audit/<lang>.tsv files with the parallel column filled")
    args = parser.parse_args(argv)
    try:
        for path in args.tables:
            with open(path, encoding="utf-8") as f:
                result = score_audit(f.read(), path)
            if result["precision"] is None:
                print(f"{path}: no labels yet ({result['unlabelled']} rows)")
            else:
                print(f"{path}: precision {100 * result['precision']:.1f}% "
                      f"(95% CI {100 * result['low']:.1f}-{100 * result['high']:.1f}) from {result['labelled']} "
                      f"labels, {result['unlabelled']} unlabelled")
    except (UserError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
