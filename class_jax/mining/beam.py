"""The Apache Beam side of `class-jax mine`: read the corpus, join articles to entities, mine, write shards.

Every DoFn here is runner-agnostic (DirectRunner, Dataflow, Flink, Spark): state lives only in elements, side
inputs and shuffles, never in the driver's memory. Counts travel as a tagged output of
((stage, lang, name), n) pairs that are summed at the end, so they are exact on any runner; malformed input lines
are counted and reported by file and line (the `bad` output), never dropped silently.

The article-to-entity join is a shuffle, not a side input, so it scales to all of Wikipedia: every article asks
for the entity of its own title and of each link target, keyed by (lang, title); the entity table answers under
the same keys; the answers are regrouped by page, then articles are grouped by entity.
"""

import gzip
import json
from typing import Any, Iterable, Iterator, Sequence

import apache_beam as beam

from class_jax.mining import mlqa_pt
from class_jax.mining.clr_pt import parallel as clr_pt
from class_jax.corpus import corpus_io, dump_reader
from class_jax.mining import dataset_io
from class_jax.mining import stages

TEACHER_BATCH = 64
COUNTS = "counts"
BAD = "bad"
MAX_BAD_LINE_EXAMPLES = 20

PageKey = tuple[str, int]


def count(stage: str, lang: str, name: str, n: int = 1) -> beam.pvalue.TaggedOutput:
    """A count to emit on the COUNTS output."""
    return beam.pvalue.TaggedOutput(COUNTS, ((stage, lang, name), n))


class ReadCorpusFileFn(beam.DoFn):
    """Reads one gzip JSON Lines file of the corpus into records; malformed lines are counted, not fatal.

    Input elements are (lang, path); `kind` is "articles", "passages" or "entities". Outputs: the parsed records
    (Article, Passage, or the entity dict), BAD (path, line, problem) and COUNTS.
    """

    def __init__(self, kind: str, stage: str):
        self._kind = kind
        self._stage = stage

    def _parse(self, record: Any) -> Any:
        if self._kind == "articles":
            return corpus_io.article_from_json(record)
        if self._kind == "passages":
            return corpus_io.passage_from_json(record)
        if not (isinstance(record.get("id"), str) and isinstance(record.get("titles"), dict)):
            raise ValueError("an entity needs a string 'id' and a 'titles' object")
        return record

    def process(self, element: tuple[str, str]) -> Iterator[Any]:
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

        lang, path = element
        with tf.io.gfile.GFile(path, "rb") as raw:
            stream = gzip.GzipFile(fileobj=raw) if path.endswith(".gz") else raw
            line_number = 0
            try:
                for line_number, line in enumerate(stream, start=1):
                    if not line.strip():
                        continue
                    try:
                        yield self._parse(json.loads(line.decode("utf-8")))
                    except (ValueError, KeyError, TypeError, AttributeError) as error:
                        # JSONDecodeError and UnicodeDecodeError are ValueErrors too.
                        yield beam.pvalue.TaggedOutput(BAD, (path, line_number, f"{type(error).__name__}: {error}"))
                        yield count(self._stage, lang, f"bad_{self._kind}_lines")
            except dump_reader.DECOMPRESSION_ERRORS as error:
                # A truncated or corrupt gzip stream: everything after the last good line is lost, and said so.
                yield beam.pvalue.TaggedOutput(BAD, (path, line_number + 1, f"unreadable: {error}"))
                yield count(self._stage, lang, f"truncated_{self._kind}_files")


def read_corpus(pipeline: beam.Pipeline, label: str, kind: str, stage: str,
                files: Sequence[tuple[str, str]]) -> beam.pvalue.DoOutputsTuple:
    """Reads (lang, path) corpus files; returns the tagged outputs (main, BAD, COUNTS)."""
    return (pipeline
            | f"{label}Files" >> beam.Create(list(files))
            # Files are few and large: redistribute so that several workers read them in parallel.
            | f"{label}Spread" >> beam.Reshuffle()
            | f"{label}Read" >> beam.ParDo(ReadCorpusFileFn(kind, stage)).with_outputs(BAD, COUNTS, main="records"))


def entity_title_rows(record: dict, langs: Sequence[str]) -> Iterator[tuple[tuple[str, str], tuple[str, dict]]]:
    """((lang, title), (entity id, titles in en + target languages)) for entities with English and a target."""
    titles = {lang: title for lang, title in record["titles"].items() if lang == "en" or lang in langs}
    if "en" not in titles or len(titles) < 2:
        return
    for lang, title in titles.items():
        yield (lang, title), (record["id"], titles)


def english_title_rows(record: dict, langs: Sequence[str]) -> Iterator[tuple[tuple[str, str], str]]:
    """((lang, title), English title) for each target-language title of an entity that has an English article."""
    english = record["titles"].get("en")
    if not english:
        return
    for lang, title in sorted(record["titles"].items()):
        if lang in langs:
            yield (lang, title), english


def link_target_lookups(article) -> Iterator[tuple[tuple[str, str], PageKey]]:
    """The link targets whose English titles an article needs (each once)."""
    page = (article.lang, article.page_id)
    for title in sorted({link.target for link in article.links}):
        yield (article.lang, title), page


def english_title_answers(element: tuple[tuple[str, str], dict]) -> Iterator[tuple[PageKey, tuple[str, str]]]:
    """Turns a joined (lang, title) key into (page, (title, English title)) answers for the pages asking."""
    (_, title), joined = element
    # An entity table row per (lang, title) is the table's invariant; the smallest wins should one repeat.
    english = sorted(joined["english"])
    if not english:
        return
    for page in sorted(set(joined["lookup"])):
        yield page, (title, english[0])


def article_lookups(article) -> Iterator[tuple[tuple[str, str], PageKey]]:
    """The titles an article needs resolved: its own and every link target (each once)."""
    page = (article.lang, article.page_id)
    for title in sorted({article.title} | {link.target for link in article.links}):
        yield (article.lang, title), page


def answer_lookups(element: tuple[tuple[str, str], dict]) -> Iterator[tuple[PageKey, tuple[str, str, dict]]]:
    """Turns a joined (lang, title) key into (page, (title, entity id, titles)) answers for the pages asking."""
    (_, title), joined = element
    answers = list(joined["entity"])
    if not answers:
        return
    entity_id, titles = answers[0]
    for page in sorted(set(joined["lookup"])):
        yield page, (title, entity_id, titles)


def passage_key(passage) -> tuple[PageKey, Any]:
    return mlqa_pt.passage_page_key(passage), passage


def article_key(article) -> tuple[PageKey, Any]:
    return (article.lang, article.page_id), article


class LinkArticleFn(beam.DoFn):
    """(page, {article, passage, resolved}) -> (entity id, (lang, LinkedArticle, entity titles))."""

    def process(self, element: tuple[PageKey, dict]) -> Iterator[Any]:
        (lang, _), grouped = element
        articles = list(grouped["article"])
        if not articles:
            return  # Passages or answers of a page whose article line was malformed (counted when read).
        article = articles[0]
        resolved = {title: (entity_id, titles) for title, entity_id, titles in grouped["resolved"]}
        own = resolved.get(article.title)
        if own is None:
            yield count("clr_pt", lang, "articles_without_entity")
            return
        link_entities = {title: entity_id for title, (entity_id, _) in resolved.items()}
        entity_titles = {entity_id: titles for entity_id, titles in resolved.values()}
        passages = sorted(grouped["passage"], key=lambda p: p.passage_id)
        linked = clr_pt.LinkedArticle(article, own[0], link_entities, tuple(passages))
        yield own[0], (lang, linked, entity_titles)


class MinePairsFn(beam.DoFn):
    """Mines every (English, target) article pair of one entity."""

    def __init__(self, config: clr_pt.ParallelRuleConfig, langs: Sequence[str]):
        self._config = config
        self._langs = tuple(langs)
        self._miner = None

    def setup(self):
        self._miner = clr_pt.ClrPtMiner(self._config)

    def process(self, element: tuple[str, Iterable[tuple[str, Any, dict]]]) -> Iterator[Any]:
        _, members = element
        by_lang: dict[str, list[tuple[Any, dict]]] = {}
        for lang, linked, titles in sorted(members, key=lambda m: (m[0], m[1].article.page_id)):
            by_lang.setdefault(lang, []).append((linked, titles))
        english = by_lang.get("en", [])
        for lang in self._langs:
            for target, target_titles in by_lang.get(lang, []):
                if not english:
                    yield count("clr_pt", lang, "target_articles_without_english")
                    continue
                for english_article, english_titles in english:
                    result = self._miner.mine(english_article, target, {**english_titles, **target_titles})
                    for name, n in sorted(result.counts.items()):
                        yield count("clr_pt", lang, name, n)
                    for record in result.records:
                        yield record.to_dict()


def dedupe_clozes(element: tuple[tuple[str, str, str], Iterable[dict]]) -> Iterator[Any]:
    """Keeps one record (smallest qid) of identical cloze pairs; counts the others."""
    (lang, _, _), records = element
    ordered = sorted(records, key=lambda record: record["qid"])
    yield ordered[0]
    if len(ordered) > 1:
        yield count("clr_pt", lang, "duplicate_clozes", len(ordered) - 1)


def cloze_pair_key(record: dict) -> tuple[tuple[str, str, str], dict]:
    return (record["lang"], record["english_cloze"], record["target_cloze"]), record


class AnchorClozeFn(beam.DoFn):
    """(page, {article, passage[, english]}) -> MLQA-PT anchor clozes of that article, with their counts.

    With English answers the group also holds "english": (link target, English title) pairs of the targets that
    have an English article.
    """

    def __init__(self, config: mlqa_pt.AnchorClozeConfig, answer_lang: str = mlqa_pt.TARGET_ANSWERS):
        self._config = config
        self._answer_lang = answer_lang

    def process(self, element: tuple[PageKey, dict]) -> Iterator[Any]:
        (lang, _), grouped = element
        articles = list(grouped["article"])
        if not articles:
            return
        extractor = mlqa_pt.AnchorClozeExtractor(self._config, self._answer_lang)
        passages = sorted(grouped["passage"], key=lambda p: p.passage_id)
        english_titles = dict(sorted(grouped.get("english", ())))
        for cloze in extractor.extract(articles[0], passages, english_titles):
            yield cloze.to_dict()
        for name, n in sorted(extractor.counts.items()):
            yield count("mlqa_pt", lang, name, n)


class TeacherFn(beam.DoFn):
    """Attaches the BM25 teacher's top-k English passages to batches of CLR-PT records."""

    def __init__(self, index_dir: str, k: int):
        self._index_dir = index_dir
        self._k = k
        self._teacher = None

    def setup(self):
        import tempfile  # pylint: disable=import-outside-toplevel

        from class_jax.mining import teacher  # pylint: disable=import-outside-toplevel

        # Loaded once per worker process; the index is read-only and shared by all its bundles. The teacher reads
        # local folders, so a remote index (gs://...) is copied to the worker first.
        index_dir = self._index_dir
        if "://" in index_dir:
            index_dir = tempfile.mkdtemp(prefix="bm25-teacher-")
            dataset_io.copy_tree(self._index_dir, index_dir)
        self._teacher = teacher.BM25Teacher.load(index_dir)

    def process(self, batch: list[dict]) -> Iterator[Any]:
        from class_jax.mining import teacher  # pylint: disable=import-outside-toplevel

        for record in teacher.attach_teacher_passages(batch, self._teacher, self._k, batch_size=len(batch)):
            yield record
            yield count("teacher", record["lang"], "records")


def _shard_key(record: dict, sizes: dict, records_per_shard: int) -> tuple[tuple[str, int], dict]:
    shards = dataset_io.num_shards(sizes.get(record["lang"], 0), records_per_shard)
    return (record["lang"], dataset_io.shard_of(record["qid"], shards)), record


def _empty_shards(lang: str, sizes: dict, records_per_shard: int) -> Iterator[tuple[tuple[str, int], None]]:
    for index in range(dataset_io.num_shards(sizes.get(lang, 0), records_per_shard)):
        yield (lang, index), None


class _WriteShardFn(beam.DoFn):
    def __init__(self, out_root: str, dataset: str, records_per_shard: int, features: dict | None = None):
        self._out_root = out_root
        self._dataset = dataset
        self._records_per_shard = records_per_shard
        self._features = features

    def process(self, element: tuple[tuple[str, int], Iterable[dict | None]], sizes: dict) -> Iterator[dict]:
        (lang, index), values = element
        records = [value for value in values if value is not None]
        shards = dataset_io.num_shards(sizes.get(lang, 0), self._records_per_shard)
        yield from dataset_io.write_shard(self._out_root, self._dataset, lang, index, shards, records,
                                          self._features)


class WriteShardedRecords(beam.PTransform):
    """Writes records (dicts with "lang" and "qid") as deterministic per-language shards; outputs file infos.

    `features` overrides the dataset's TFRecord features (dataset_io.features_of).
    """

    def __init__(self, out_root: str, dataset: str, langs: Sequence[str], records_per_shard: int,
                 features: dict | None = None):
        super().__init__()
        self._out_root = out_root
        self._dataset = dataset
        self._langs = sorted(langs)
        self._records_per_shard = records_per_shard
        self._features = features

    def expand(self, records):
        sizes = beam.pvalue.AsDict(records | "Langs" >> beam.Map(lambda record: record["lang"])
                                   | "Sizes" >> beam.combiners.Count.PerElement())
        keyed = records | "ShardKey" >> beam.Map(_shard_key, sizes, self._records_per_shard)
        # Every shard of every language is written, even an empty one, so the file set depends only on counts.
        empty = (records.pipeline | "AllLangs" >> beam.Create(self._langs)
                 | "AllShards" >> beam.FlatMap(_empty_shards, sizes, self._records_per_shard))
        return ((keyed, empty) | "Both" >> beam.Flatten() | "ByShard" >> beam.GroupByKey()
                | "Write" >> beam.ParDo(_WriteShardFn(self._out_root, self._dataset, self._records_per_shard,
                                                      self._features), sizes))


def write_json(value: Any, path: str) -> None:
    """Writes a JSON document through tf.io.gfile (local or remote)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps(value, ensure_ascii=False, sort_keys=True, indent=1))


def _counts_as_rows(pairs: list) -> list:
    return sorted([list(key) + [n] for key, n in pairs])


def write_summaries(work_dir: str, counts: Sequence[Any], bad: Sequence[Any], files: Any) -> None:
    """Writes the stage's counts, bad-line examples and file infos as JSON files into `work_dir`.

    Args:
      work_dir: the stage's work folder.
      counts: COUNTS PCollections (flattened here).
      bad: BAD PCollections.
      files: the file infos of the written shards.
    """
    pipeline = files.pipeline
    (tuple(counts) | "AllCounts" >> beam.Flatten(pipeline=pipeline) | "SumCounts" >> beam.CombinePerKey(sum)
     | "CountList" >> beam.combiners.ToList() | "CountRows" >> beam.Map(_counts_as_rows)
     | "WriteCounts" >> beam.Map(write_json, dataset_io.join(work_dir, "counts.json")))
    (tuple(bad) | "AllBad" >> beam.Flatten(pipeline=pipeline)
     | "FirstBad" >> beam.combiners.Top.Smallest(MAX_BAD_LINE_EXAMPLES)
     | "WriteBad" >> beam.Map(write_json, dataset_io.join(work_dir, "bad_lines.json")))
    (files | "FileList" >> beam.combiners.ToList() | "SortFiles" >> beam.Map(sorted, key=lambda f: f["path"])
     | "WriteFiles" >> beam.Map(write_json, dataset_io.join(work_dir, "files.json")))


# -- the stage graphs --------------------------------------------------------------------------------------------------

def build_clr_pt(pipeline: beam.Pipeline, corpus: stages.CorpusFiles, langs: Sequence[str],
                 config: clr_pt.ParallelRuleConfig, out_root: str, work_dir: str, records_per_shard: int) -> None:
    """Adds the CLR-PT mining stage to a pipeline (see mining_beam for the join)."""
    all_langs = ["en", *langs]
    entities = read_corpus(pipeline, "Entities", "entities", "clr_pt", [("en", corpus.entities)])
    articles = read_corpus(pipeline, "Articles", "articles", "clr_pt", corpus.files("articles", all_langs))
    passages = read_corpus(pipeline, "Passages", "passages", "clr_pt", corpus.files("passages", all_langs))
    titles = entities.records | "TitleRows" >> beam.FlatMap(entity_title_rows, list(langs))
    lookups = articles.records | "Lookups" >> beam.FlatMap(article_lookups)
    answers = ({"entity": titles, "lookup": lookups} | "JoinTitles" >> beam.CoGroupByKey()
               | "Answers" >> beam.FlatMap(answer_lookups))
    by_page = ({"article": articles.records | "ArticleKey" >> beam.Map(article_key),
                "passage": passages.records | "PassageKey" >> beam.Map(passage_key),
                "resolved": answers} | "ByPage" >> beam.CoGroupByKey())
    linked = by_page | "Link" >> beam.ParDo(LinkArticleFn()).with_outputs(
        COUNTS, main="linked")
    mined = (linked.linked | "ByEntity" >> beam.GroupByKey()
             | "Mine" >> beam.ParDo(MinePairsFn(config, langs)).with_outputs(
                 COUNTS, main="records"))
    unique = (mined.records | "PairKey" >> beam.Map(cloze_pair_key) | "SamePair" >> beam.GroupByKey()
              | "Dedupe" >> beam.FlatMap(dedupe_clozes).with_outputs(COUNTS, main="records"))
    files = unique.records | "Write" >> WriteShardedRecords(out_root, "clr_pt", langs, records_per_shard)
    write_summaries(
        work_dir, [entities.counts, articles.counts, passages.counts, linked.counts, mined.counts, unique.counts],
        [entities.bad, articles.bad, passages.bad], files)


def build_mlqa_pt(pipeline: beam.Pipeline, corpus: stages.CorpusFiles, langs: Sequence[str],
                  config: mlqa_pt.AnchorClozeConfig, out_root: str, work_dir: str, records_per_shard: int,
                  answer_lang: str = mlqa_pt.TARGET_ANSWERS) -> None:
    """Adds the MLQA-PT anchor-cloze stage to a pipeline.

    With English answers (`answer_lang="en"`) each link target is also joined to its entity's English title, by
    the same shuffle on (lang, title) as CLR-PT's join; the default graph reads no entity table, so its output
    stays what it was.
    """
    articles = read_corpus(pipeline, "Articles", "articles", "mlqa_pt", corpus.files("articles", langs))
    passages = read_corpus(pipeline, "Passages", "passages", "mlqa_pt", corpus.files("passages", langs))
    grouped = {"article": articles.records | "ArticleKey" >> beam.Map(article_key),
               "passage": passages.records | "PassageKey" >> beam.Map(passage_key)}
    counts, bad = [articles.counts, passages.counts], [articles.bad, passages.bad]
    if answer_lang == mlqa_pt.ENGLISH_ANSWERS:
        entities = read_corpus(pipeline, "Entities", "entities", "mlqa_pt", [("en", corpus.entities)])
        english = entities.records | "EnglishTitles" >> beam.FlatMap(english_title_rows, list(langs))
        lookups = articles.records | "TargetLookups" >> beam.FlatMap(link_target_lookups)
        grouped["english"] = ({"english": english, "lookup": lookups} | "JoinEnglish" >> beam.CoGroupByKey()
                              | "EnglishAnswers" >> beam.FlatMap(english_title_answers))
        counts.append(entities.counts)
        bad.append(entities.bad)
    clozes = (grouped | "ByPage" >> beam.CoGroupByKey()
              | "Clozes" >> beam.ParDo(AnchorClozeFn(config, answer_lang)).with_outputs(
                  COUNTS, main="records"))
    files = clozes.records | "Write" >> WriteShardedRecords(
        out_root, "mlqa_pt_clozes", langs, records_per_shard,
        dataset_io.features_of("mlqa_pt_clozes", answer_lang))
    write_summaries(work_dir, counts + [clozes.counts], bad, files)


def _read_clr_pt_file(element: tuple[str, str]) -> Iterator[dict]:
    _, path = element
    yield from dataset_io.read_jsonl_file(path)


def build_teacher(pipeline: beam.Pipeline, out_root: str, langs: Sequence[str], index_dir: str, k: int,
                  work_dir: str, records_per_shard: int) -> None:
    """Adds the teacher stage (top-k English passages for every CLR-PT record) to a pipeline."""
    files_in = [(lang, path) for lang in langs for path in dataset_io.jsonl_shards(out_root, "clr_pt", lang)]
    records = (pipeline | "ClrPtFiles" >> beam.Create(files_in) | "Spread" >> beam.Reshuffle()
               | "Read" >> beam.FlatMap(_read_clr_pt_file))
    # Each query is scored on its own, so how records fall into batches never changes the output.
    attached = (records | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=TEACHER_BATCH)
                | "TopK" >> beam.ParDo(TeacherFn(index_dir, k)).with_outputs(
                    COUNTS, main="records"))
    files = attached.records | "Write" >> WriteShardedRecords(
        out_root, "clr_pt_teacher", langs, records_per_shard)
    write_summaries(work_dir, [attached.counts], [], files)
