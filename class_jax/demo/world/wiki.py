"""The generated multilingual demo wiki: writes it in the real dump formats, and ingests it back.

Output folder (`class-jax make-demo-wiki --out DIR`):

    DIR/dumps/{lang}wiki-20240101-pages-articles.xml.bz2   MediaWiki export 0.10, one per language
    DIR/dumps/{lang}wiki-20240101-langlinks.sql.gz         mysqldump of the langlinks table
    DIR/xor_tydi/xor_{train,dev}_retrieve_eng_span*.jsonl  questions answered by English spans
    DIR/xor_tydi/xor_{train,dev}_full*.jsonl               questions answered in their own language
    DIR/demo_manifest.json                                 files, sizes, and the counts ingestion must find
    DIR/README.txt

Everything is a pure function of (size, seed, languages): equal arguments give byte-identical files.
"""

import collections
import json
import os
import pathlib
import random
from typing import Any, Sequence

from class_jax.corpus import corpus_io, entities, ingest, ingest_links
from class_jax.demo.world import questions as demo_questions, dump_writer
from class_jax.demo.world.articles import LanguageWiki, build_language_wiki
from class_jax.demo.world.language import DEFAULT_LANGUAGES, DemoLanguage, available_languages
from class_jax.demo.world.facts import SIZES, World, build_world
from class_jax.runtime.errors import UserError

DUMP_DATE = "20240101"
MANIFEST = "demo_manifest.json"
STALE_LANGLINKS_PER_LANGUAGE = 1


def dump_name(lang: str) -> str:
    """File name of a language's pages-articles dump."""
    return f"{lang}wiki-{DUMP_DATE}-pages-articles.xml.bz2"


def langlinks_name(lang: str) -> str:
    """File name of a language's langlinks dump."""
    return f"{lang}wiki-{DUMP_DATE}-langlinks.sql.gz"


def _langlink_rows(wikis: dict[str, LanguageWiki], lang: str, rng: random.Random) -> tuple[list, int]:
    """The langlinks of one language: every article to its counterparts, plus stale rows to missing titles."""
    own = wikis[lang]
    rows = []
    for group, page_id in own.page_ids.items():
        for other_lang, other in wikis.items():
            if other_lang != lang and group in other.titles:
                rows.append((page_id, other_lang, other.titles[group]))
    # Real langlinks lag behind page moves and deletions: a few point at titles the other wiki lacks.
    stale = 0
    for group in sorted(own.page_ids):
        missing = [other_lang for other_lang in sorted(wikis)
                   if other_lang != lang and group not in wikis[other_lang].titles]
        if missing and stale < STALE_LANGLINKS_PER_LANGUAGE:
            rows.append((own.page_ids[group], rng.choice(missing), f"{own.titles[group]} (old)"))
            stale += 1
    return sorted(rows), stale


def _check_arguments(size: str, languages: Sequence[str]) -> None:
    if size not in SIZES:
        raise UserError(f"--size {size!r}: choose one of {', '.join(SIZES)}")
    known = available_languages()
    unknown = [lang for lang in languages if lang not in known]
    if unknown:
        raise UserError(f"--languages: no demo templates for {', '.join(unknown)} (available: {', '.join(known)})")
    if not languages or languages[0] != "en" or len(set(languages)) != len(languages):
        raise UserError("--languages must start with en and list each language once")
    if len(languages) < 2:
        raise UserError("--languages needs en and at least one other language")


def make_demo_wiki(out_dir: str | os.PathLike, size: str = "default", seed: int = 0,
                   languages: Sequence[str] = DEFAULT_LANGUAGES) -> dict[str, Any]:
    """Generates the demo wiki.

    Args:
      out_dir: output folder (created; existing demo files are overwritten).
      size: "small" (CI) or "default" (laptop demo).
      seed: random seed.
      languages: "en" first, then the other languages (each needs templates/<lang>.json).

    Returns:
      The manifest (also written to DIR/demo_manifest.json).

    Raises:
      UserError: unknown size or language.
    """
    languages = tuple(languages)
    _check_arguments(size, languages)
    out = pathlib.Path(out_dir)
    world = build_world(size, seed, languages)
    wikis = {lang: build_language_wiki(world, lang, seed=hash_seed(seed, lang)) for lang in languages}
    manifest: dict[str, Any] = {"size": size, "seed": seed, "languages": list(languages), "files": {},
                                "counts": {}, "questions": {}}
    for lang in languages:
        language = DemoLanguage(lang, world)
        namespaces = {int(number): name for number, name in language.data["namespaces"].items()}
        dump_writer.write_pages_xml(out / "dumps" / dump_name(lang), lang, wikis[lang].pages, namespaces)
        rows, stale = _langlink_rows(wikis, lang, random.Random(f"{seed}:langlinks:{lang}"))
        dump_writer.write_langlinks_sql(out / "dumps" / langlinks_name(lang), lang, rows)
        counts = dict(sorted(wikis[lang].counts.items()))
        counts.update(langlinks=len(rows), stale_langlinks=stale)
        manifest["counts"][lang] = counts
        manifest["files"][lang] = {"dump": f"dumps/{dump_name(lang)}", "langlinks": f"dumps/{langlinks_name(lang)}"}
    groups = collections.Counter(group for wiki in wikis.values() for group in wiki.titles)
    manifest["entities"] = {
        "world": {kind: len(world.of_kind(kind)) for kind in sorted({e.kind for e in world.entities.values()})},
        "linked_across_languages": sum(1 for count in groups.values() if count >= 2),
    }
    for name, records in demo_questions.build_questions(world, wikis, size, seed).items():
        corpus_io.write_jsonl(out / "xor_tydi" / name, records)
        per_language = collections.Counter(str(record["lang"]) for record in records)
        manifest["questions"][name] = dict(sorted(per_language.items()))
    manifest["question_files"] = {name: f"xor_tydi/{name}" for name in demo_questions.FILES.values()}
    corpus_io.write_json(out / MANIFEST, manifest)
    _write_readme(out, world, manifest)
    return manifest


def hash_seed(seed: int, lang: str) -> int:
    """A per-language seed that does not depend on Python's hash randomisation."""
    return random.Random(f"{seed}:pages:{lang}").getrandbits(63)


def _write_readme(out: pathlib.Path, world: World, manifest: dict[str, Any]) -> None:
    lines = [f"Generated demo wiki (size {manifest['size']}, seed {manifest['seed']}).", "",
             "dumps/     pages-articles XML (bz2) and langlinks SQL (gz) per language, real Wikimedia formats",
             "xor_tydi/  XOR-TyDi-format questions (retrieve: English answers; full: in-language answers)",
             f"{MANIFEST}  the counts ingestion must reproduce", "",
             f"entities: {len(world.entities)}; articles per language: " + ", ".join(
                 f"{lang} {counts['articles']}" for lang, counts in manifest["counts"].items()),
             "", "Ingest with: class-jax ingest --dump dumps/LLwiki-...xml.bz2 --lang LL --out CORPUS "
                 "--langlinks dumps/LLwiki-...langlinks.sql.gz"]
    with corpus_io.atomic_write(out / "README.txt") as f:
        f.write("\n".join(lines) + "\n")


def read_manifest(demo_dir: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a generated demo wiki.

    Raises:
      UserError: the folder holds no demo wiki.
    """
    path = pathlib.Path(demo_dir) / MANIFEST
    if not path.is_file():
        raise UserError(f"{path}: missing; generate the demo wiki with `class-jax make-demo-wiki` first")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def ingest_demo_wiki(demo_dir: str | os.PathLike, corpus_dir: str | os.PathLike, progress: bool = False,
                     settings: ingest.IngestSettings = ingest.IngestSettings()) -> dict[str, Any]:
    """Ingests every language of a demo wiki (dump + langlinks) and builds the entity table.

    Args:
      demo_dir: the folder written by `make_demo_wiki`.
      corpus_dir: the corpus root to write.
      progress: show progress bars.
      settings: ingestion settings.

    Returns:
      {"languages": {lang: counts}, "entities": entity-table counts}.
    """
    manifest = read_manifest(demo_dir)
    demo = pathlib.Path(demo_dir)
    result: dict[str, Any] = {"languages": {}}
    for lang in manifest["languages"]:
        files = manifest["files"][lang]
        counts = ingest.DumpIngester(str(demo / files["dump"]), corpus_dir, lang, settings, progress=progress).run()
        counts.update(ingest_links.ingest_langlinks(corpus_dir, lang, str(demo / files["langlinks"])))
        result["languages"][lang] = dict(counts)
    result["entities"] = dict(entities.build_entity_table(corpus_dir))
    return result
