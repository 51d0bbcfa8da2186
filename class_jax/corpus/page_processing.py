"""Pass 2 of ingestion for one page: wikitext -> Article and passages, in this process or in a worker pool.

The step is a pure function of the page (given the wiki's namespaces, redirects and titles), so pages can be
cleaned by several processes; results come back in dump order, so outputs do not depend on the number of workers.
"""

import collections
import contextlib
import dataclasses
import itertools
import multiprocessing
from typing import Callable, Iterator

from class_jax.corpus import dump_reader, passages, wiki_languages
from class_jax.corpus.titles import NamespaceTable, RedirectTable, normalize_title
from class_jax.corpus.types import Article, Passage
from class_jax.corpus.wikitext_cleaner import WikitextCleaner


@dataclasses.dataclass
class PageResult:
    """What pass 2 makes of one article page."""

    counts: collections.Counter
    article: Article | None = None
    interlanguage: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)
    passages: list[Passage] = dataclasses.field(default_factory=list)


class PageProcessor:
    """Everything pass 2 does to one page: clean, classify, cut passages (pure, so it can run in workers).

    Args:
      lang: the wiki's language.
      profile: its conventions.
      units_per_passage: passage length (words, or characters for space-less scripts).
      drop_red_links: drop links to titles missing from `titles` (they are counted either way).
      passages_from_disambiguation: cut passages from disambiguation pages too.
      namespaces: the wiki's namespace table.
      redirects: its redirects (link targets are resolved through them).
      titles: titles of its articles (to tell red links).
    """

    def __init__(self, lang: str, profile: wiki_languages.LanguageProfile, units_per_passage: int,
                 drop_red_links: bool, passages_from_disambiguation: bool, namespaces: NamespaceTable,
                 redirects: RedirectTable, titles: set[str]):
        self.lang = lang
        self.profile = profile
        self.units_per_passage = units_per_passage
        self.drop_red_links = drop_red_links
        self.passages_from_disambiguation = passages_from_disambiguation
        self.cleaner = WikitextCleaner(namespaces, profile, redirects)
        self.titles = titles

    def __call__(self, page: dump_reader.RawPage) -> PageResult:
        """Processes one main-namespace, non-redirect page."""
        counts: collections.Counter = collections.Counter()
        title = normalize_title(page.title, self.cleaner.namespaces.first_letter_case)
        if page.model != "wikitext":
            counts["skipped_not_wikitext"] += 1
            return PageResult(counts)
        if not page.text.strip():
            counts["skipped_empty_page"] += 1
            return PageResult(counts)
        cleaned = self.cleaner.clean(page.text)
        counts.update(cleaned.counts)
        if cleaned.has_markup_residue:
            counts["pages_with_markup_residue"] += 1
        if not cleaned.text:
            counts["skipped_empty_after_cleaning"] += 1
            return PageResult(counts)
        links = []
        for link in cleaned.links:
            if link.target not in self.titles:
                counts["links_to_missing_pages"] += 1
                if self.drop_red_links:
                    counts["links_dropped_missing_page"] += 1
                    continue
            links.append(link)
        is_disambiguation = (self.profile.is_disambiguation_title(title)
                             or bool(cleaned.templates & (self.profile.disambiguation_templates | {"__disambig__"})))
        is_list = not is_disambiguation and self.profile.is_list_title(title)
        article = Article(lang=self.lang, page_id=page.page_id, title=title, text=cleaned.text,
                          links=tuple(links), is_disambiguation=is_disambiguation, is_list=is_list)
        counts["articles"] += 1
        counts["disambiguation_pages"] += is_disambiguation
        counts["list_pages"] += is_list
        result = PageResult(counts, article, [(title, lang, other) for lang, other in cleaned.interlanguage])
        if not is_disambiguation or self.passages_from_disambiguation:
            result.passages = passages.split_passages(article, self.units_per_passage, self.profile.char_units)
        counts["passages"] += len(result.passages)
        counts["passage_links"] += sum(len(passage.links) for passage in result.passages)
        return result


_WORKER_PROCESSOR: PageProcessor | None = None


def _set_worker_processor(processor: PageProcessor) -> None:
    global _WORKER_PROCESSOR
    _WORKER_PROCESSOR = processor


def _process_in_worker(task: tuple[dump_reader.RawPage, bool]) -> tuple[dump_reader.RawPage, PageResult | None]:
    page, wanted = task
    return page, (_WORKER_PROCESSOR(page) if wanted else None)


@contextlib.contextmanager
def page_mapper(workers: int, processor: Callable[[], "PageProcessor | None"]) -> Iterator[Callable]:
    """Maps tasks to (page, result) in order, in this process or in a pool of worker processes.

    The processor only exists once the dump's siteinfo has been read, so the pool starts on the first page.
    """
    if workers <= 1:
        def inline(tasks):
            for page, wanted in tasks:
                yield page, (processor()(page) if wanted else None)
        yield inline
        return
    pools = []

    def pooled(tasks):
        tasks = iter(tasks)
        first = next(tasks, None)
        if first is None:
            return
        pool = multiprocessing.Pool(workers, initializer=_set_worker_processor, initargs=(processor(),))
        pools.append(pool)
        # Results come back in input order, so shards and their bytes are the same as with one process.
        yield from pool.imap(_process_in_worker, itertools.chain([first], tasks), chunksize=8)

    try:
        yield pooled
    finally:
        for pool in pools:
            pool.terminate()
            pool.join()
