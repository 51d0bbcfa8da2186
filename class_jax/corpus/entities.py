"""The cross-language entity table: entity id -> {language: title}, built from langlinks and Wikidata.

Nodes are (language, title) pairs; every langlink and every Wikidata entity joins its nodes, and each connected
component becomes one entity. Its id is the Wikidata Q-id when Wikidata named it, else "{lang}:{title}" of its
English title (or of its first language in code order). Titles of ingested languages are resolved through that
language's redirects; langlinks pointing at titles an ingested dump does not contain are skipped and counted.
"""

import collections
import dataclasses
import pathlib
import re
from typing import Iterator

from class_jax.corpus import corpus_io
from class_jax.corpus.titles import RedirectTable, normalize_title

ENTITIES_FILE = "entities.jsonl.gz"
ENTITIES_REPORT = "entities.json"
WIKIDATA_FILE = "wikidata_sitelinks.jsonl.gz"
_QID = re.compile(r"^Q(\d+)$")

Node = tuple[str, str]


class EntityTable:
    """Entities with their titles per language, and lookups between languages.

    Args:
      redirects: optional language -> redirect table; lookups then also accept redirect titles.
    """

    def __init__(self, redirects: dict[str, RedirectTable] | None = None):
        self._titles: dict[str, dict[str, str]] = {}
        self._by_title: dict[Node, str] = {}
        self._redirects = redirects or {}

    def add(self, entity_id: str, titles: dict[str, str]) -> None:
        """Adds (or replaces) one entity."""
        self._titles[entity_id] = dict(titles)
        for lang, title in titles.items():
            self._by_title[(lang, title)] = entity_id

    def __len__(self) -> int:
        return len(self._titles)

    def __iter__(self) -> Iterator[tuple[str, dict[str, str]]]:
        return iter(self._titles.items())

    def titles(self, entity_id: str) -> dict[str, str]:
        """The titles of an entity per language ({} for unknown ids)."""
        return dict(self._titles.get(entity_id, {}))

    def entity_of(self, lang: str, title: str) -> str | None:
        """The entity a page belongs to, following that language's redirects; None if not in the table."""
        title = normalize_title(title)
        entity = self._by_title.get((lang, title))
        if entity is None and lang in self._redirects:
            final = self._redirects[lang].resolve(title)
            entity = self._by_title.get((lang, final)) if final else None
        return entity

    def translations(self, lang: str, title: str) -> dict[str, str]:
        """The titles of the same entity in the other languages ({} when the page has no known entity)."""
        entity = self.entity_of(lang, title)
        if entity is None:
            return {}
        return {other: other_title for other, other_title in self._titles[entity].items() if other != lang}

    def title_in(self, lang: str, title: str, target_lang: str) -> str | None:
        """The title of the same entity in `target_lang`, or None."""
        return self.translations(lang, title).get(target_lang)

    def save(self, path: str | pathlib.Path) -> int:
        """Writes the table as gzip JSON Lines `{"id", "titles"}`, sorted by id; returns the entity count."""
        return corpus_io.write_jsonl(path, ({"id": entity_id, "titles": dict(sorted(titles.items()))}
                                            for entity_id, titles in sorted(self._titles.items())))

    @classmethod
    def load(cls, path: str | pathlib.Path, redirects: dict[str, RedirectTable] | None = None) -> "EntityTable":
        """Reads a table written by `save`."""
        table = cls(redirects)
        for record in corpus_io.read_jsonl(path):
            table.add(record["id"], record["titles"])
        return table

    @classmethod
    def from_corpus(cls, root: str | pathlib.Path, with_redirects: bool = True) -> "EntityTable":
        """Loads the table of an ingested corpus root, with the redirects of its languages for lookups."""
        redirects = {lang: load_redirects(root, lang) for lang in corpus_io.corpus_languages(root)} \
            if with_redirects else None
        return cls.load(pathlib.Path(root) / ENTITIES_FILE, redirects)


def load_redirects(root: str | pathlib.Path, lang: str) -> RedirectTable:
    """The redirect table of one ingested language."""
    table = RedirectTable()
    path = corpus_io.language_dir(root, lang) / "redirects.tsv.gz"
    if path.is_file():
        for row in corpus_io.read_tsv(path):
            table.add(row["title"], row["target"])
    return table


def load_article_titles(root: str | pathlib.Path, lang: str) -> set[str]:
    """Titles of the (non-redirect) main-namespace pages of one ingested language."""
    path = corpus_io.language_dir(root, lang) / "pages.tsv.gz"
    return {row["title"] for row in corpus_io.read_tsv(path) if row["kind"] == "article"}


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[Node, Node] = {}

    def find(self, node: Node) -> Node:
        self.parent.setdefault(node, node)
        root = node
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[node] != root:  # Path compression keeps later finds short.
            self.parent[node], node = root, self.parent[node]
        return root

    def union(self, first: Node, second: Node) -> None:
        first_root, second_root = self.find(first), self.find(second)
        if first_root != second_root:
            self.parent[max(first_root, second_root)] = min(first_root, second_root)


@dataclasses.dataclass
class _Resolver:
    """Normalises titles and checks them against the ingested languages."""

    titles: dict[str, set[str]]
    redirects: dict[str, RedirectTable]

    def resolve(self, lang: str, title: str) -> tuple[str | None, str]:
        """(final title or None, outcome) for a title in `lang`."""
        title = normalize_title(title)
        if not title:
            return None, "empty"
        if lang not in self.titles:
            return title, "language_not_ingested"
        final = self.redirects[lang].resolve(title)
        if final is None:
            return None, "redirect_loop"
        if final not in self.titles[lang]:
            return None, "unknown_title"
        return final, "resolved"


def build_entity_table(root: str | pathlib.Path) -> collections.Counter:
    """(Re)builds ROOT/entities.jsonl.gz from every ingested language's langlinks and the Wikidata sitelinks.

    Args:
      root: the corpus root.

    Returns:
      Counts: entities, entity_titles, langlinks used and skipped by reason, wikidata titles used or unknown,
      conflicts (two titles of one language in one component; the best-supported one is kept).
    """
    root = pathlib.Path(root)
    languages = corpus_io.corpus_languages(root)
    resolver = _Resolver(titles={lang: load_article_titles(root, lang) for lang in languages},
                         redirects={lang: load_redirects(root, lang) for lang in languages})
    counts: collections.Counter = collections.Counter()
    components = _UnionFind()
    votes: collections.Counter = collections.Counter()
    qids: dict[Node, set[str]] = collections.defaultdict(set)
    wikidata_nodes: set[Node] = set()

    wikidata_path = root / WIKIDATA_FILE
    if wikidata_path.is_file():
        for record in corpus_io.read_jsonl(wikidata_path):
            nodes = []
            for lang, title in record["titles"].items():
                final, outcome = resolver.resolve(lang, title)
                if final is None and outcome == "unknown_title":
                    # Wikidata is authoritative; a shortened dump simply lacks the page.
                    final, outcome = normalize_title(title), "not_in_dump"
                counts[f"wikidata_titles_{outcome}"] += 1
                if final is not None:
                    nodes.append((lang, final))
            for node in nodes:
                components.union(nodes[0], node)
                wikidata_nodes.add(node)
            if nodes:
                qids[nodes[0]].add(record["id"])

    for lang in languages:
        for kind in ("langlinks.tsv.gz", "inline_langlinks.tsv.gz"):
            path = corpus_io.language_dir(root, lang) / kind
            if not path.is_file():
                continue
            for row in corpus_io.read_tsv(path):
                source = (lang, row["title"])
                if row["lang"] == lang:
                    counts["langlinks_skipped_same_language"] += 1
                    continue
                final, outcome = resolver.resolve(row["lang"], row["target_title"])
                if final is None:
                    counts[f"langlinks_skipped_{outcome}"] += 1
                    continue
                counts["langlinks_used"] += 1
                if outcome == "language_not_ingested":
                    counts["langlinks_target_language_not_ingested"] += 1
                target = (row["lang"], final)
                components.union(source, target)
                votes[source] += 1
                votes[target] += 1

    table = _components_to_entities(components, qids, votes, wikidata_nodes, counts)
    counts["entities"] = table.save(root / ENTITIES_FILE)
    counts["entity_titles"] = sum(len(titles) for _, titles in table)
    corpus_io.write_json(root / ENTITIES_REPORT, dict(sorted(counts.items())))
    return counts


def _components_to_entities(components: _UnionFind, qids: dict[Node, set[str]], votes: collections.Counter,
                            wikidata_nodes: set[Node], counts: collections.Counter) -> EntityTable:
    members: dict[Node, list[Node]] = collections.defaultdict(list)
    for node in list(components.parent):
        members[components.find(node)].append(node)
    component_qids: dict[Node, set[str]] = collections.defaultdict(set)
    for node, ids in qids.items():
        component_qids[components.find(node)] |= ids
    table = EntityTable()
    for component_root, nodes in members.items():
        by_lang: dict[str, list[str]] = collections.defaultdict(list)
        for lang, title in nodes:
            by_lang[lang].append(title)
        titles: dict[str, str] = {}
        for lang, candidates in by_lang.items():
            if len(candidates) > 1:
                counts["entity_title_conflicts"] += 1
            # Wikidata's title wins, then the title most langlinks agree on, then the first in code order.
            titles[lang] = min(candidates, key=lambda t, lang=lang: ((lang, t) not in wikidata_nodes,
                                                                     -votes[(lang, t)], t))
        if len(titles) < 2:
            counts["entities_skipped_single_language"] += 1
            continue
        ids = sorted(component_qids.get(component_root, ()), key=_qid_order)
        if len(ids) > 1:
            counts["entity_qid_conflicts"] += 1
        if ids:
            entity_id = ids[0]
        else:
            lang = "en" if "en" in titles else min(titles)
            entity_id = f"{lang}:{titles[lang]}"
        table.add(entity_id, titles)
    return table


def _qid_order(entity_id: str) -> tuple[int, str]:
    match = _QID.match(entity_id)
    return (int(match.group(1)) if match else 1 << 62, entity_id)
