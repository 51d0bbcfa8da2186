"""The driver side of `class-jax mine`: its inputs, the question rewriting and the teacher index.

The stages (the Beam graphs are in mining_beam.py):

  clr_pt     (Beam)   English + target articles -> entity join -> parallel cloze pairs  -> OUT/clr_pt
  mlqa_pt    (Beam)   target articles + passages -> anchor clozes                      -> OUT/mlqa_pt_clozes
                      (+ entity table -> English answers, with --mlqa_pt_answer_lang en)
             (driver) anchor clozes -> rewritten questions (cached, batched)           -> OUT/mlqa_pt
  teacher    (driver) English passages -> BM25 index                                   -> OUT/.work (temporary)
             (Beam)   CLR-PT records -> teacher top-k English passages                 -> OUT/clr_pt_teacher

Why rewriting runs in the driver, not in a DoFn: the rewrite cache is one append-only file whose writes must not
interleave, LLM servers are rate-limited per client (the HTTP rewriter already runs a bounded thread pool), and a
local model should be loaded once, not once per worker process. The step streams shard by shard, so memory stays
bounded, and a rerun after a kill answers finished rewrites from the cache.
"""

import dataclasses
import hashlib
import tempfile
from typing import Iterator, Sequence

from class_jax.corpus import corpus_io
from class_jax.corpus import entities
from class_jax.mining import dataset_io
from class_jax.mining.rewrite import rewriter as rewrite
from class_jax.mining.rewrite import cache as rewrite_cache
from class_jax.mining.rewrite import filters
from class_jax.runtime.errors import UserError

@dataclasses.dataclass(frozen=True)
class CorpusFiles:
    """The input files of an ingested corpus.

    Attributes:
      root: the corpus root.
      entities: path of the entity table.
      articles: lang -> article shard paths.
      passages: lang -> passage shard paths.
    """

    root: str
    entities: str
    articles: dict[str, list[str]]
    passages: dict[str, list[str]]

    def files(self, kind: str, langs: Sequence[str]) -> list[tuple[str, str]]:
        """(lang, path) of the "articles" or "passages" shards of the given languages."""
        table = self.articles if kind == "articles" else self.passages
        return [(lang, path) for lang in langs for path in table[lang]]


def locate_corpus(root: str, langs: Sequence[str]) -> CorpusFiles:
    """Finds the input files of an ingested corpus and checks that everything mining needs is there.

    Args:
      root: the corpus root written by `class-jax ingest`.
      langs: the target languages (English is needed too).

    Returns:
      The corpus files.

    Raises:
      UserError: no languages, English among them, a language not (completely) ingested, or no entity table.
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    gfile = tf.io.gfile
    if not langs:
        raise UserError("--langs: name at least one target language")
    if "en" in langs:
        raise UserError("--langs: 'en' is always the other side of every pair; list target languages only")
    if len(set(langs)) != len(langs):
        raise UserError(f"--langs: a language is listed twice: {' '.join(langs)}")
    root = root.rstrip("/")
    if not gfile.isdir(root):
        raise UserError(f"{root}: corpus folder not found")
    ingested = sorted(name.rstrip("/") for name in gfile.listdir(root)
                      if gfile.exists(dataset_io.join(root, name.rstrip("/"), "manifest.json")))
    for lang in ["en", *langs]:
        if lang not in ingested:
            raise UserError(f"{dataset_io.join(root, lang, 'manifest.json')}: missing; language {lang!r} was not "
                            f"(completely) ingested into {root} (ingested: {', '.join(ingested) or 'none'})")
    entity_path = dataset_io.join(root, entities.ENTITIES_FILE)
    if not gfile.exists(entity_path):
        raise UserError(f"{entity_path}: missing; the corpus has no cross-language entity table (ingest with "
                        f"--langlinks or --wikidata, which builds it)")

    def shards(lang: str, kind: str) -> list[str]:
        return sorted(gfile.glob(dataset_io.join(root, lang, kind, f"{kind}-*.jsonl.gz")))

    all_langs = ["en", *langs]
    return CorpusFiles(root=root, entities=entity_path,
                       articles={lang: shards(lang, "articles") for lang in all_langs},
                       passages={lang: shards(lang, "passages") for lang in all_langs})


def _file_sha256(path: str) -> tuple[str, int]:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    digest, size = hashlib.sha256(), 0
    with tf.io.gfile.GFile(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def corpus_reference(corpus: CorpusFiles, langs: Sequence[str]) -> dict:
    """What the outputs were mined from: the corpus root, and checksums of the entity table and of each language's
    ingestion manifest (which lists its shards and counts), so any change to the inputs changes the reference."""
    sha256, size = _file_sha256(corpus.entities)
    reference = {"root": corpus.root, "entities": {"path": entities.ENTITIES_FILE, "sha256": sha256, "bytes": size},
                 "languages": {}}
    for lang in ["en", *langs]:
        manifest_path = dataset_io.join(corpus.root, lang, "manifest.json")
        counts = (dataset_io.read_json(manifest_path) or {}).get("counts", {})
        reference["languages"][lang] = {
            "manifest_sha256": _file_sha256(manifest_path)[0], "articles": counts.get("articles"),
            "passages": counts.get("passages"), "article_shards": len(corpus.articles[lang])}
    return reference


def rewriter_fingerprint(settings) -> dict:
    """The rewriter settings that decide its questions, with a digest of the prompt files LLM rewriters use."""
    from class_jax.mining.rewrite import prompting  # pylint: disable=import-outside-toplevel

    fingerprint = {"kind": settings.kind, "model": settings.model}
    if settings.kind in ("http", "transformers"):
        prompt_dir = settings.prompt_dir or str(prompting.PACKAGE_PROMPT_DIR)
        digest = hashlib.sha256()
        for path in sorted(dataset_io.list_files(prompt_dir, ".json")):
            digest.update(path.rsplit("/", 1)[-1].encode("utf-8") + _file_sha256(path)[0].encode("ascii"))
        fingerprint["prompts"] = digest.hexdigest()
    return fingerprint


def check_rewriter_settings(settings) -> None:
    """Raises UserError for an unknown rewriter kind or a missing --rewriter_model / --rewriter_url."""
    if settings.kind not in ("template", "http", "transformers", "none"):
        raise UserError(f"--rewriter {settings.kind!r}: choose template, http, transformers or none")
    if settings.kind in ("http", "transformers") and not settings.model:
        raise UserError(f"--rewriter {settings.kind} needs --rewriter_model")
    if settings.kind == "http" and not settings.url:
        raise UserError("--rewriter http needs --rewriter_url (the API root, e.g. http://127.0.0.1:8000/v1)")
    if settings.batch_size <= 0:
        raise UserError(f"--rewrite_batch_size must be positive, got {settings.batch_size}")


def make_rewriter(settings, mask_token: str) -> rewrite.Rewriter:
    """Builds the question rewriter the settings name.

    Raises:
      UserError: bad settings (see `check_rewriter_settings`), or the rewriter cannot start (no API key, no model).
    """
    from class_jax.mining.rewrite import prompting  # pylint: disable=import-outside-toplevel

    check_rewriter_settings(settings)
    if settings.kind == "template":
        from class_jax.mining.rewrite import template_rewriter  # pylint: disable=import-outside-toplevel
        return template_rewriter.TemplateRewriter(mask_token)
    prompts = prompting.PromptLibrary(settings.prompt_dir, mask_token)
    if settings.kind == "http":
        from class_jax.mining.rewrite import http_rewriter  # pylint: disable=import-outside-toplevel
        return http_rewriter.OpenAIChatRewriter(http_rewriter.HttpRewriterConfig(
            base_url=settings.url, model=settings.model, api_key_env=settings.api_key_env), prompts)
    from class_jax.mining.rewrite import local_rewriter  # pylint: disable=import-outside-toplevel
    return local_rewriter.TransformersRewriter(settings.model, prompts)


def _shard_count(path: str) -> tuple[int, int]:
    """(index, shards) from a shard file name "...-00001-of-00004.jsonl"."""
    stem = path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    parts = stem.split("-")
    return int(parts[-3]), int(parts[-1])


def rewrite_questions(out_root: str, langs: Sequence[str], rewriter: rewrite.Rewriter,
                      cache: rewrite_cache.RewriteCache | None, filter_config: filters.RewriteFilterConfig,
                      batch_size: int, progress: bool, total: int | None = None,
                      answer_lang: str | None = None) -> tuple[dict, list[dict]]:
    """Rewrites the anchor clozes into questions, shard by shard, outside Beam (see the module docstring).

    Each output shard keeps its input shard's index and shard count, and its records' qid order.

    Args:
      out_root: the output root holding mlqa_pt_clozes/.
      langs: target languages.
      rewriter: the question rewriter.
      cache: finished rewrites (read and appended); None to always call the rewriter.
      filter_config: checks on rewritten questions.
      batch_size: records per rewriter call.
      progress: show a progress bar.
      total: the number of clozes, for the progress bar.
      answer_lang: the clozes' answer language as the mlqa_pt step's settings name it ("en", or None for anchor
        texts); English-answer records keep their extra fields in the TFRecords too.

    Returns:
      (per-language rewrite reports, file infos of the written shards).
    """
    import tqdm  # pylint: disable=import-outside-toplevel

    reports = {lang: rewrite.RewriteReport() for lang in langs}
    features = dataset_io.features_of("mlqa_pt", answer_lang)
    files = []
    with tqdm.tqdm(total=total, desc="rewriting clozes into questions", unit="cloze", disable=not progress) as bar:

        def counted(path: str) -> Iterator[dict]:
            for record in dataset_io.read_jsonl_file(path):
                yield record
                bar.update(1)

        for lang in langs:
            for path in dataset_io.jsonl_shards(out_root, "mlqa_pt_clozes", lang):
                index, shards = _shard_count(path)
                questions = list(rewrite.rewrite_records(
                    counted(path), rewriter, cache=cache, filter_config=filter_config, report=reports[lang],
                    batch_size=batch_size))
                files += dataset_io.write_shard(out_root, "mlqa_pt", lang, index, shards, questions, features)
                bar.set_postfix(lang=lang, kept=sum(report.kept for report in reports.values()))
    summaries = {lang: report.as_dict() for lang, report in reports.items()}
    return summaries, sorted(files, key=lambda info: info["path"])


def build_teacher_index(corpus: CorpusFiles, index_dir: str, *, k1: float, b: float, stemmer: str | None,
                        mask_token: str, progress: bool) -> dict:
    """Builds and saves the BM25 teacher over the corpus's English passages (in the driver).

    Returns:
      The teacher's description (kind, k1, b, stemmer, passages) and skipped_passage_lines (malformed lines,
      which the clr_pt stage also reports by file and line).

    Raises:
      UserError: there are no English passages.
    """
    import tqdm  # pylint: disable=import-outside-toplevel

    from class_jax.mining import teacher  # pylint: disable=import-outside-toplevel

    skipped = 0

    def passages() -> Iterator:
        nonlocal skipped
        for path in corpus.passages["en"]:
            try:
                for record in dataset_io.read_jsonl_file(path):
                    try:
                        yield corpus_io.passage_from_json(record)
                    except (KeyError, TypeError, ValueError):
                        skipped += 1
            except ValueError:
                skipped += 1  # An undecodable line ends this file's stream; it is reported by clr_pt.

    stream = tqdm.tqdm(passages(), desc="indexing English passages (BM25)", unit="passage", disable=not progress)
    index = teacher.BM25Teacher.build(stream, k1=k1, b=b, stemmer=stemmer, mask_token=mask_token)
    if "://" in index_dir:
        # The teacher saves to local folders; stage it and copy it to the remote output.
        with tempfile.TemporaryDirectory() as local:
            index.save(local)
            dataset_io.copy_tree(local, index_dir)
    else:
        index.save(index_dir)
    return {**index.describe(), "skipped_passage_lines": skipped}
