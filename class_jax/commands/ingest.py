"""`class-jax ingest`: a Wikipedia dump (plus langlinks and Wikidata) -> articles, passages, entity table."""

import argparse
import collections
import json
import time
from typing import Mapping

from class_jax.corpus import entities, ingest, ingest_links
from class_jax.runtime.errors import UserError

# Report sections: (heading, counter keys in display order). Keys not listed land in "other".
_REPORT_SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("pages", ("pages", "main_namespace_pages", "articles", "redirects", "disambiguation_pages", "list_pages",
               "passages")),
    ("skipped pages", ("skipped_other_namespace", "skipped_duplicate_title", "skipped_not_wikitext",
                       "skipped_empty_page", "skipped_empty_after_cleaning", "pages_with_markup_residue")),
    ("redirects", ("redirects_broken", "redirects_loop", "redirects_to_other_namespace")),
    ("links", ("links_seen", "links_template_generated", "links_kept", "links_via_redirect",
               "links_to_missing_pages", "links_dropped_missing_page", "passage_links")),
    ("links not kept", ("links_in_removed_markup", "links_category", "links_file", "links_interlanguage",
                        "links_other_namespace", "links_interwiki", "links_section_only", "links_empty_anchor",
                        "links_malformed_anchor", "links_nested")),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declares the command's flags."""
    parser.add_argument("--dump", help="pages-articles XML dump (.xml, .bz2, .gz); may be left out to only add "
                                       "langlinks / Wikidata to an already ingested language")
    parser.add_argument("--lang", required=True, help="language code of the dump (en, ja, ...)")
    parser.add_argument("--out", required=True, help="corpus root; the language is written to OUT/LANG/")
    parser.add_argument("--langlinks", help="the language's langlinks.sql(.gz) dump")
    parser.add_argument("--wikidata", nargs="+", default=[], help="Wikidata JSON files (entities with sitelinks)")
    parser.add_argument("--pages_per_shard", type=int, default=ingest.IngestSettings.pages_per_shard,
                        help="dump pages per output shard (the unit of resumption)")
    parser.add_argument("--units_per_passage", type=int, default=None,
                        help="words per passage (characters for ja/zh/th...); default: the language's")
    parser.add_argument("--passages_from_disambiguation", action="store_true",
                        help="also cut passages from disambiguation pages")
    parser.add_argument("--drop_red_links", action="store_true", help="drop links to pages missing from the dump")
    parser.add_argument("--invalid_bytes", choices=("error", "replace"), default="error",
                        help="bytes invalid in the dump's encoding: stop with an error, or replace and count them")
    parser.add_argument("--language_profile", metavar="JSON",
                        help="JSON file overriding the language's markers, e.g. {\"disambiguation_templates\": "
                             "[\"dab\"], \"list_title\": \"^List of \", \"dropped_sections\": [\"notes\"]}")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes cleaning pages in parallel (outputs do not depend on it)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier ingestion of this language made from another dump or settings")
    parser.add_argument("--no_progress", action="store_true", help="no progress bars")


def _check_numeric_flags(args: argparse.Namespace) -> None:
    """Refuses numeric flags outside their range, naming the flag, the range and the value."""
    for flag, value in (("--pages_per_shard", args.pages_per_shard), ("--units_per_passage", args.units_per_passage),
                        ("--workers", args.workers)):
        if value is not None and value < 1:
            raise UserError(f"{flag} must be at least 1, got {value}")


def _read_profile(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            overrides = json.load(f)
    except OSError as e:
        raise UserError(f"{path}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: invalid UTF-8 at byte {e.start}") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: line {e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(overrides, dict):
        raise UserError(f"{path}: expected a JSON object of profile settings")
    return overrides


def format_report(counts: Mapping[str, int]) -> str:
    """Renders counts as an aligned, sectioned text table."""
    remaining = {key: value for key, value in counts.items() if value}
    lines = []
    sections = list(_REPORT_SECTIONS) + [("other", tuple(sorted(
        key for key in remaining if not any(key in keys for _, keys in _REPORT_SECTIONS))))]
    for heading, keys in sections:
        shown = [(key, counts[key]) for key in keys if counts.get(key)]
        if not shown:
            continue
        lines.append(f"{heading}:")
        lines += [f"  {key.replace('_', ' '):<34} {value:>12,}" for key, value in shown]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Runs the ingestion and prints the final counts.

    Raises:
      UserError: bad input files or flags.
    """
    started = time.time()
    _check_numeric_flags(args)
    counts: collections.Counter = collections.Counter()
    if args.dump:
        settings = ingest.IngestSettings(
            pages_per_shard=args.pages_per_shard, units_per_passage=args.units_per_passage,
            passages_from_disambiguation=args.passages_from_disambiguation, drop_red_links=args.drop_red_links,
            invalid_bytes=args.invalid_bytes, workers=args.workers,
            profile_overrides=_read_profile(args.language_profile) if args.language_profile else {})
        dump_counts = ingest.DumpIngester(args.dump, args.out, args.lang, settings, progress=not args.no_progress,
                                          overwrite=args.overwrite).run()
        if dump_counts.get("already_complete"):
            print(f"{args.lang}: already ingested from {args.dump} under {args.out}; nothing to do")
        counts.update(dump_counts)
    if args.langlinks:
        counts.update(ingest_links.ingest_langlinks(args.out, args.lang, args.langlinks))
    if args.wikidata:
        counts.update(ingest_links.ingest_wikidata(args.out, args.wikidata))
    if not (args.dump or args.langlinks or args.wikidata):
        raise UserError("nothing to do: give --dump, --langlinks or --wikidata")
    counts.update(entities.build_entity_table(args.out))
    already_complete = counts.pop("already_complete", 0)
    elapsed = time.time() - started
    pages = counts.get("pages", 0)
    print(format_report(counts))
    rate = f", {pages / elapsed:,.1f} pages/s" if pages and elapsed > 0 and not already_complete else ""
    print(f"done in {elapsed:,.1f} s{rate}; output in {args.out}")
    return 0
