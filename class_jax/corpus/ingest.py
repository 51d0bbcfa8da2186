"""Ingestion of one language's Wikipedia dump into the corpus format of `corpus_io`.

Two streaming passes over the dump:
  1. titles and redirects (cheap: no wikitext parsing) -> pages.tsv.gz, redirects.tsv.gz;
  2. articles: wikitext cleaned, links resolved through the redirects, passages cut -> shards of
     articles/passages, each shard written atomically and marked complete by shards/shard-NNNNN.json.
A killed run resumes: pass 1 is reused when its outputs exist, completed shards are skipped (their pages are read
but not parsed again). manifest.json, written last, says the language is complete; a rerun with the same dump and
settings then does nothing.

Memory: constant in the dump size except for the title set and redirect table of pass 1, which grow with the
number of pages (about 1-2 GB for English Wikipedia).
"""

import collections
import contextlib
import dataclasses
import json
import os
import pathlib
import re
import shutil
from typing import Any, Iterator

from class_jax.corpus import corpus_io, dump_reader, entities, page_processing, wiki_languages
from class_jax.corpus.titles import NamespaceTable, RedirectTable, normalize_title
from class_jax.runtime.errors import UserError

_LANG_CODE = re.compile(r"^[a-z]{2,3}(?:-[a-z]+)*$")


@dataclasses.dataclass(frozen=True)
class IngestSettings:
    """Knobs of the ingestion; they are part of the resume fingerprint.

    Attributes:
      pages_per_shard: dump pages (of any namespace) per output shard.
      units_per_passage: words (characters for space-less scripts) per passage; None = the language default.
      passages_from_disambiguation: cut passages from disambiguation pages too (DPR dropped them).
      drop_red_links: drop links whose target page is not in the dump (they are counted either way).
      invalid_bytes: "error" stops at bytes invalid in the dump's encoding; "replace" substitutes and counts.
      workers: processes that clean pages in parallel (outputs are identical for any number); not part of the
        resume fingerprint.
      profile_overrides: settings replacing the language's built-in profile (see `wiki_languages.profile_for`).
    """

    pages_per_shard: int = 10000
    units_per_passage: int | None = None
    passages_from_disambiguation: bool = False
    drop_red_links: bool = False
    invalid_bytes: str = "error"
    workers: int = 1
    profile_overrides: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The settings that change outputs (the resume fingerprint)."""
        settings = dataclasses.asdict(self)
        del settings["workers"]
        return settings


class ByteProgress:
    """A tqdm bar over compressed bytes, or nothing."""

    def __init__(self, enabled: bool, total: int, description: str):
        self._bar = None
        if enabled:
            import tqdm  # Imported here: only the CLI shows bars.
            self._bar = tqdm.tqdm(total=total, unit="B", unit_scale=True, desc=description, leave=True)

    def update_to(self, position: int) -> None:
        if self._bar is not None:
            self._bar.update(position - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _check_language(lang: str, site_info: dump_reader.SiteInfo, path: str) -> None:
    expected = lang.replace("-", "_") + "wiki"
    if site_info.dbname and site_info.dbname != expected:
        raise UserError(f"{path}: the dump is {site_info.dbname!r} but --lang is {lang!r} (expected {expected!r})")


class DumpIngester:
    """Ingests one dump of one language under a corpus root.

    Args:
      dump_path: the pages-articles XML dump.
      root: the corpus root (the language goes to ROOT/<lang>/).
      lang: the dump's language code.
      settings: ingestion settings.
      progress: show tqdm bars.
      overwrite: discard an earlier, different ingestion of this language instead of refusing.
    """

    def __init__(self, dump_path: str, root: str | os.PathLike, lang: str,
                 settings: IngestSettings = IngestSettings(), progress: bool = False, overwrite: bool = False):
        if not _LANG_CODE.match(lang):
            raise UserError(f"--lang {lang!r} is not a Wikipedia language code")
        dump_reader.check_input_file(dump_path, "--dump")
        if settings.pages_per_shard <= 0:
            raise UserError(f"--pages_per_shard must be at least 1, got {settings.pages_per_shard}")
        if settings.units_per_passage is not None and settings.units_per_passage <= 0:
            raise UserError(f"--units_per_passage must be at least 1, got {settings.units_per_passage}")
        if settings.workers <= 0:
            raise UserError(f"--workers must be at least 1, got {settings.workers}")
        self.dump_path = dump_path
        self.lang = lang
        self.root = pathlib.Path(root)
        self.folder = corpus_io.language_dir(root, lang)
        self.settings = settings
        self.progress = progress
        self.overwrite = overwrite
        self.profile = wiki_languages.profile_for(lang, settings.profile_overrides)
        self.units_per_passage = settings.units_per_passage or self.profile.units_per_passage
        self.fingerprint = {"dump": os.path.basename(dump_path), "dump_bytes": os.path.getsize(dump_path),
                            "lang": lang, "settings": settings.to_json(),
                            "format_version": corpus_io.FORMAT_VERSION}

    # -- orchestration ---------------------------------------------------------------------------------------------

    def run(self) -> collections.Counter:
        """Runs (or resumes) the ingestion.

        Returns:
          The counts of the whole language (also stored in manifest.json); `resumed_shards` says how many shards
          an earlier run had completed, `already_complete` is 1 when nothing had to be done.

        Raises:
          UserError: bad dump, or an earlier ingestion of this language with another dump or other settings.
        """
        manifest_path = self.folder / "manifest.json"
        state_path = self.folder / "ingest_state.json"
        self._claim_folder(manifest_path, state_path)
        if manifest_path.is_file():
            counts = collections.Counter(corpus_io.read_manifest(self.root, self.lang)["counts"])
            counts["already_complete"] = 1
            return counts
        corpus_io.remove_partial_files(self.folder)
        corpus_io.write_json(state_path, self.fingerprint)
        titles, article_ordinals, redirects, pass1_counts = self._titles_and_redirects()
        shard_counts, resumed = self._articles(titles, article_ordinals, redirects)
        counts = collections.Counter(pass1_counts)
        counts.update(shard_counts)
        counts["resumed_shards"] = resumed
        self._merge_inline_langlinks()
        corpus_io.write_json(manifest_path, {
            **self.fingerprint, "counts": dict(sorted(counts.items())),
            "units_per_passage": self.units_per_passage, "char_units": self.profile.char_units,
            "shards": sorted(path.name for path in (self.folder / "shards").glob("shard-*.json")),
        })
        return counts

    def _claim_folder(self, manifest_path: pathlib.Path, state_path: pathlib.Path) -> None:
        """Refuses (or, with overwrite, clears) a folder holding another ingestion of this language."""
        for path in (manifest_path, state_path):
            if not path.is_file():
                continue
            with open(path, encoding="utf-8") as f:
                recorded = json.load(f)
            recorded_fingerprint = {key: recorded.get(key) for key in self.fingerprint}
            if recorded_fingerprint == self.fingerprint:
                return
            if not self.overwrite:
                raise UserError(f"{self.folder}: holds an ingestion of {recorded.get('dump')!r} with other settings "
                                f"({recorded_fingerprint} != {self.fingerprint}); pass --overwrite to replace it")
            shutil.rmtree(self.folder)
            return

    def _pages(self, description: str) -> Iterator[dump_reader.RawPage]:
        """The dump's pages with a progress bar; checks the dump's language on the way."""
        bar = ByteProgress(self.progress, os.path.getsize(self.dump_path), description)
        reader = dump_reader.DumpReader(self.dump_path, invalid_bytes=self.settings.invalid_bytes,
                                        on_progress=bar.update_to, require_siteinfo=True)
        self._reader = reader
        checked = False
        try:
            for page in reader.pages():
                if not checked:
                    _check_language(self.lang, reader.site_info, self.dump_path)
                    checked = True
                yield page
            bar.update_to(os.path.getsize(self.dump_path))
        finally:
            bar.close()

    # -- pass 1 ------------------------------------------------------------------------------------------------------

    def _titles_and_redirects(self) -> tuple[set[str], set[int], RedirectTable, dict[str, int]]:
        """Pass 1: article titles and page ids, the redirect table, and their counts (reused on resume)."""
        pass1_path = self.folder / "pass1.json"
        pages_path, redirects_path = self.folder / "pages.tsv.gz", self.folder / "redirects.tsv.gz"
        if pass1_path.is_file() and pages_path.is_file() and redirects_path.is_file():
            titles, article_ordinals = set(), set()
            for row in corpus_io.read_tsv(pages_path):
                if row.get("ordinal") is None:  # written before pages were told apart by dump position: redo
                    break
                if row["kind"] == "article":
                    titles.add(row["title"])
                    article_ordinals.add(int(row["ordinal"]))
            else:
                redirects = entities.load_redirects(self.root, self.lang)
                with open(pass1_path, encoding="utf-8") as f:
                    return titles, article_ordinals, redirects, json.load(f)
        counts: collections.Counter = collections.Counter()
        titles: set[str] = set()
        # Articles are told apart by their position in the dump: page ids can repeat in a hostile dump.
        article_ordinals: set[int] = set()
        redirects = RedirectTable()
        namespaces: NamespaceTable | None = None

        def page_rows() -> Iterator[tuple[int, str, str, int]]:
            nonlocal namespaces
            for page in self._pages("pass 1/2: titles, redirects"):
                counts["pages"] += 1
                if namespaces is None:
                    info = self._reader.site_info
                    namespaces = NamespaceTable(self.lang, info.namespaces, info.first_letter_case)
                if page.namespace != wiki_languages.MAIN_NAMESPACE:
                    counts["skipped_other_namespace"] += 1
                    continue
                counts["main_namespace_pages"] += 1
                title = normalize_title(page.title, namespaces.first_letter_case)
                redirect = page.redirect_target
                if redirect is None:
                    redirect = _redirect_from_text(page.text, self.profile.redirect_words)
                if redirect is not None:
                    counts["redirects"] += 1
                    number, rest = namespaces.split_namespace(normalize_title(redirect))
                    target = normalize_title(rest, namespaces.first_letter_case)
                    if number != wiki_languages.MAIN_NAMESPACE or not target:
                        counts["redirects_to_other_namespace"] += 1
                    else:
                        redirects.add(title, target)
                    yield page.page_id, title, "redirect", page.ordinal
                    continue
                if title in titles:
                    counts["skipped_duplicate_title"] += 1
                    continue
                titles.add(title)
                article_ordinals.add(page.ordinal)
                yield page.page_id, title, "article", page.ordinal

        corpus_io.write_tsv(pages_path, ["page_id", "title", "kind", "ordinal"], page_rows())
        rows = []
        for title, target, final in redirects.resolve_all():
            if final is None:
                counts["redirects_loop"] += 1
            elif final not in titles:
                counts["redirects_broken"] += 1
            rows.append((title, target, final or ""))
        corpus_io.write_tsv(redirects_path, ["title", "target", "resolved"], rows)
        corpus_io.write_json(pass1_path, dict(counts))
        return titles, article_ordinals, redirects, dict(counts)

    # -- pass 2 ------------------------------------------------------------------------------------------------------

    def _articles(self, titles: set[str], article_ordinals: set[int],
                  redirects: RedirectTable) -> tuple[collections.Counter, int]:
        """Pass 2: cleans articles into shards, skipping shards an earlier run completed.

        Only the pages pass 1 took as articles (by dump position) are cleaned: a later page with the title (or the
        page id) of an earlier one was counted as skipped there, and leaves nothing in the outputs.
        """
        shard_folder = self.folder / "shards"
        done = {int(path.stem.split("-")[1]) for path in shard_folder.glob("shard-*.json")}
        totals: collections.Counter = collections.Counter()
        for shard in sorted(done):
            with open(shard_folder / f"shard-{shard:05d}.json", encoding="utf-8") as f:
                totals.update(json.load(f))
        writer: _ShardWriter | None = None
        processor: page_processing.PageProcessor | None = None

        def tasks() -> Iterator[tuple[dump_reader.RawPage, bool]]:
            """Every page, flagged whether it needs processing (text dropped when not, to spare pickling)."""
            nonlocal processor
            for page in self._pages("pass 2/2: articles, passages"):
                if processor is None:
                    info = self._reader.site_info
                    processor = page_processing.PageProcessor(
                        self.lang, self.profile, self.units_per_passage, self.settings.drop_red_links,
                        self.settings.passages_from_disambiguation,
                        NamespaceTable(self.lang, info.namespaces, info.first_letter_case), redirects, titles)
                wanted = (page.ordinal in article_ordinals
                          and page.ordinal // self.settings.pages_per_shard not in done)
                yield (page if wanted else dataclasses.replace(page, text="")), wanted

        try:
            with page_processing.page_mapper(self.settings.workers, lambda: processor) as mapper:
                for page, result in mapper(tasks()):
                    shard = page.ordinal // self.settings.pages_per_shard
                    if writer is not None and writer.shard != shard:
                        totals.update(writer.commit())
                        writer = None
                    if shard in done:
                        continue
                    if writer is None:
                        writer = _ShardWriter(self.folder, shard)
                    if result is not None:
                        writer.add(result)
            if writer is not None:
                totals.update(writer.commit())
            totals["invalid_bytes_replaced"] = self._reader.replaced_bytes
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        return totals, len(done)

    def _merge_inline_langlinks(self) -> None:
        """Joins the shards' legacy `[[xx:Title]]` links into one table for the entity builder."""
        def rows() -> Iterator[tuple[str, str, str]]:
            for path in sorted((self.folder / "shards").glob("inline-langlinks-*.tsv.gz")):
                for row in corpus_io.read_tsv(path):
                    yield row["title"], row["lang"], row["target_title"]
        corpus_io.write_tsv(self.folder / "inline_langlinks.tsv.gz", ["title", "lang", "target_title"], rows())


class _ShardWriter:
    """The output files of one shard, committed together (done marker last) or not at all."""

    def __init__(self, folder: pathlib.Path, shard: int):
        self.folder = folder
        self.shard = shard
        self.counts: collections.Counter = collections.Counter()
        self._stack = contextlib.ExitStack()
        name = f"{shard:05d}"
        self._articles = self._stack.enter_context(
            corpus_io.atomic_write(folder / "articles" / f"articles-{name}.jsonl.gz"))
        self._passages = self._stack.enter_context(
            corpus_io.atomic_write(folder / "passages" / f"passages-{name}.jsonl.gz"))
        self._interlanguage: list[tuple[str, str, str]] = []

    def add(self, result: page_processing.PageResult) -> None:
        """Appends one page's outputs and counts."""
        self.counts.update(result.counts)
        if result.article is not None:
            self._articles.write(json.dumps(corpus_io.article_to_json(result.article), ensure_ascii=False) + "\n")
        self._interlanguage.extend(result.interlanguage)
        self.counts["inline_langlinks"] += len(result.interlanguage)
        for passage in result.passages:
            self._passages.write(json.dumps(corpus_io.passage_to_json(passage), ensure_ascii=False) + "\n")

    def commit(self) -> collections.Counter:
        self._stack.close()
        name = f"{self.shard:05d}"
        corpus_io.write_tsv(self.folder / "shards" / f"inline-langlinks-{name}.tsv.gz",
                            ["title", "lang", "target_title"], self._interlanguage)
        corpus_io.write_json(self.folder / "shards" / f"shard-{name}.json", dict(self.counts))
        return self.counts

    def abort(self) -> None:
        """Drops the shard's partial files (called while an exception propagates)."""
        error = RuntimeError(f"shard {self.shard} aborted")
        # Leaving the atomic writers through an exception makes them delete their temporary files.
        self._stack.__exit__(RuntimeError, error, None)


_REDIRECT_LINK = re.compile(r"\[\[([^\]|]+)")


def _redirect_from_text(text: str, words: tuple[str, ...]) -> str | None:
    """The target of a `#REDIRECT [[Target]]` page (for old dumps without `<redirect>`)."""
    head = text.lstrip()[:300]
    upper = head.upper()
    for word in words:
        if upper.startswith(word.upper()):
            match = _REDIRECT_LINK.search(head)
            return match.group(1) if match else None
    return None
