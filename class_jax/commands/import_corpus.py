"""`class-jax import-corpus`: a published passage file (DPR psgs_w100.tsv, CORA all_w100.tsv) -> corpus directory.

The output holds passages only, in the format `class-jax ingest` writes, with the published ids, so `index`,
`retrieve`, `build-fid` and the refresh hook read it and the official scorers and the authors' rankings line up.
"""

import argparse
import time

from class_jax.corpus import import_corpus
from class_jax.runtime.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declares the command's flags."""
    parser.add_argument("--format", required=True, choices=import_corpus.FORMATS,
                        help="dpr: psgs_w100.tsv (English); cora: all_w100.tsv (13 languages)")
    parser.add_argument("--input", required=True, help="the .tsv file (.tsv.gz and .tsv.bz2 are read too)")
    parser.add_argument("--out", required=True, help="corpus root to write; empty, or an earlier run of the same "
                                                     "command (which is resumed, or left as it is when complete)")
    parser.add_argument("--lang", default=None,
                        help="language of rows the file does not label (dpr: default en; cora: rows without a lang "
                             "column or an xx_ / xx- id prefix)")
    parser.add_argument("--skip_bad_rows", action="store_true",
                        help="skip and count malformed rows (wrong column count, duplicate or empty id, empty text, "
                             "invalid UTF-8) instead of stopping at the first")
    parser.add_argument("--rows_per_shard", type=int, default=import_corpus.DEFAULT_ROWS_PER_SHARD,
                        help="input rows per output shard (the unit of resumption)")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Imports the file and prints the counts, skipped rows included.

    Raises:
      UserError: bad input or flags, or an output directory holding something else.
    """
    if args.rows_per_shard < 1:
        raise UserError(f"--rows_per_shard must be at least 1, got {args.rows_per_shard}")
    started = time.time()
    settings = import_corpus.ImportSettings(format=args.format, skip_bad_rows=args.skip_bad_rows, lang=args.lang,
                                            rows_per_shard=args.rows_per_shard)
    report = import_corpus.CorpusImporter(args.input, args.out, settings, progress=not args.no_progress).run()
    if report["already_complete"]:
        print(f"{args.out}: already imported from {args.input}; nothing to do")
    for lang, count in report["passages_by_lang"].items():
        print(f"{lang}: {count:,} passages")
    skipped = ", ".join(f"{kind.replace('_', ' ')} {count:,}" for kind, count in report["skipped"].items())
    print(f"skipped rows: {report['skipped_total']:,}" + (f" ({skipped})" if skipped else ""))
    if report["resumed_shards"] and not report["already_complete"]:
        print(f"resumed after {report['resumed_shards']} completed shards")
    print(f"done in {time.time() - started:,.1f} s; output in {args.out}, report in "
          f"{args.out}/{import_corpus.IMPORT_REPORT}")
    return 0
