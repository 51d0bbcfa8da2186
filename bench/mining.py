"""Benchmark: Wikipedia dump processing (pages/s per core) — class_jax ingestion vs WikiExtractor.

Both sides read the same bz2 dumps, in one process each (one core), one after the other within every repeat:
  * class_jax: `DumpIngester(...).run()` with one worker — what `class-jax ingest` does: pass 1 (titles and
    redirects), pass 2 (wikitext parsed and cleaned, links with exact anchor spans resolved through the redirects,
    100-word passages with their links cut), gzip JSON-lines shards written;
  * WikiExtractor 3.1.0 (`pip install -e ".[bench]"`): what `wikiextractor --links --json --processes 1 DUMP` does,
    minus its reader/reducer processes: the siteinfo scan, the template-collection pass over the dump, then
    `Extractor.extract` on every page (templates expanded, links kept as HTML anchors), JSON lines written to a file.
"Pages" are the dump's main-namespace articles that are not redirects: the pages both sides extract (the count is
checked to agree). Links: class_jax's article links kept with their anchors; WikiExtractor's `<a href>` anchors.
Per core = pages per CPU-second of the process (`time.process_time`), which other jobs on a shared machine disturb
less than wall time; the wall-time ratio is reported too. Rounds alternate the two sides.

The bg dump of shared/ is UTF-16, which WikiExtractor cannot read (it assumes UTF-8), so the default dumps are the
English ones.

  python bench/mining.py
  python bench/mining.py --dumps DUMP.xml.bz2 --repeats 5 --out bench/results/mining_big.json
"""

import argparse
import collections
import io
import pathlib
import sys
import tempfile
import time

import numpy as np

import bench_utils

_SHARED_DUMPS = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data" / "wiki" / "dumps"
DEFAULT_DUMPS = [str(_SHARED_DUMPS / name) for name in (
    "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2",
    "enwiki-table-markup.xml.bz2",
    "enwiki-pages-articles-sample.xml.bz2",
)]


def run_class_jax(dump: str) -> dict:
    """One `class-jax ingest` of `dump` (English, one worker) into a temporary folder."""
    from class_jax.corpus.ingest import DumpIngester, IngestSettings

    with tempfile.TemporaryDirectory() as folder:
        started, cpu_started = time.perf_counter(), time.process_time()
        counts = DumpIngester(dump, folder, "en", IngestSettings(workers=1)).run()
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    pages = counts["articles"] + sum(counts.get(name, 0) for name in (
        "skipped_empty_page", "skipped_empty_after_cleaning", "skipped_not_wikitext"))
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "pages": pages, "links": counts["links_kept"],
            "passages": counts["passages"]}


def run_wikiextractor(dump: str) -> dict:
    """WikiExtractor's `process_dump` steps for `dump`, sequentially in this process, output to a JSON-lines file.

    Raises:
      ImportError: wikiextractor is not installed.
    """
    from wikiextractor import WikiExtractor as wx
    from wikiextractor.extract import Extractor

    started, cpu_started = time.perf_counter(), time.process_time()
    urlbase, known_namespaces, prefix = "", {"Template"}, ""
    with wx.decode_open(dump) as source:  # siteinfo, as process_dump reads it
        for line in source:
            match = wx.tagRE.search(line)
            if not match:
                continue
            tag = match.group(2)
            if tag == "base":
                urlbase = match.group(3)[:match.group(3).rfind("/")]
            elif tag == "namespace":
                known_namespaces.add(match.group(3))
                if 'key="10"' in line:
                    wx.templateNamespace = match.group(3)
                    prefix = match.group(3) + ":"
            elif tag == "/siteinfo":
                break
        # Template definitions: plain dicts instead of the shared-memory blobs its worker processes read.
        templates, redirects = {}, {}
        _, prefix = wx.load_templates(source, templates=templates, redirects=redirects, template_prefix=prefix)
    pages = links = 0
    with tempfile.TemporaryDirectory() as folder, open(pathlib.Path(folder) / "wiki_00", "w",
                                                       encoding="utf-8") as out, wx.decode_open(dump) as source:
        for page_id, revid, title, lines in wx.collect_pages(source):
            buffer = io.StringIO()
            Extractor(page_id, revid, urlbase, title, lines, templates=templates, redirects=redirects,
                      templatePrefix=prefix, knownNamespaces=known_namespaces, keepLinks=True, to_json=True,
                      ignored_tag_patterns=list(wx._DEFAULT_IGNORED_TAG_PATTERNS)).extract(buffer)
            text = buffer.getvalue()
            links += text.count("&lt;a href=")
            out.write(text)
            pages += 1
    return {"seconds": time.perf_counter() - started, "cpu_seconds": time.process_time() - cpu_started, "pages": pages,
            "links": links}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dumps", nargs="+", default=DEFAULT_DUMPS, help="UTF-8 English pages-articles dumps")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (each runs both sides on every dump)")
    parser.add_argument("--skip_wikiextractor", action="store_true")
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results" / "mining.json"))
    args = parser.parse_args(argv)

    sides = {"class_jax": run_class_jax}
    if not args.skip_wikiextractor:
        sides["wikiextractor"] = run_wikiextractor
    for run in sides.values():  # warm-up: imports, regex compilation, file cache
        run(args.dumps[-1])
    rounds: dict[str, list[dict]] = collections.defaultdict(list)
    for _ in range(args.repeats):
        for name, run in sides.items():  # interleaved, so load changes on a shared machine hit both sides
            totals = collections.Counter()
            for dump in args.dumps:
                totals.update(run(dump))
            rounds[name].append(dict(totals))
    result = {"dumps": args.dumps, "repeats": args.repeats, **bench_utils.machine(), "sides": {}}
    for name, runs in rounds.items():
        wall = [run["seconds"] for run in runs]
        cpu = [run["cpu_seconds"] for run in runs]
        result["sides"][name] = {**{k: v for k, v in runs[0].items() if k not in ("seconds", "cpu_seconds")},
                                 "median_s": float(np.median(wall)), "all_s": wall,
                                 "median_cpu_s": float(np.median(cpu)), "all_cpu_s": cpu,
                                 "pages_per_s": runs[0]["pages"] / float(np.median(wall)),
                                 "pages_per_cpu_s": runs[0]["pages"] / float(np.median(cpu))}
    ours = result["sides"]["class_jax"]
    rows = [["class_jax ingest (clean text + links/anchors + passages)", ours["pages"], ours["links"],
             f"{ours['median_s']:.2f}", f"{ours['median_cpu_s']:.2f}", f"{ours['pages_per_cpu_s']:.1f}", "-", "-"]]
    if "wikiextractor" in result["sides"]:
        peer = result["sides"]["wikiextractor"]
        if peer["pages"] != ours["pages"]:
            raise RuntimeError(f"the two sides extracted different pages: {ours['pages']} vs {peer['pages']}")
        result["speedup_vs_wikiextractor"] = ours["pages_per_cpu_s"] / peer["pages_per_cpu_s"]
        result["wall_speedup_vs_wikiextractor"] = ours["pages_per_s"] / peer["pages_per_s"]
        rows[0][-2:] = [f"{result['speedup_vs_wikiextractor']:.2f}x", f"{result['wall_speedup_vs_wikiextractor']:.2f}x"]
        rows.append(["WikiExtractor 3.1.0 (--links --json, templates expanded)", peer["pages"], peer["links"],
                     f"{peer['median_s']:.2f}", f"{peer['median_cpu_s']:.2f}", f"{peer['pages_per_cpu_s']:.1f}",
                     "1.00x", "1.00x"])
    print(f"\nWikipedia dump processing, one process each, {len(args.dumps)} dump(s), median of {args.repeats} "
          f"(load average {result['load_avg_1m']:.1f} on {result['cpus']} CPUs). Per core = per CPU-second of the "
          "process.\n")
    print(bench_utils.markdown_table(["implementation", "pages", "links", "wall s", "CPU s", "pages/s per core",
                                      "vs WikiExtractor (CPU)", "(wall)"], rows))
    print(f"\nwrote {bench_utils.write_json(args.out, result)}")
    return 0


if __name__ == "__main__":
    bench_utils.start_process()
    sys.exit(main())
