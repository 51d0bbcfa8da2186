"""FiD examples from questions or mined records plus a retriever's passages (input of `write_fid_examples`).

    questions (XOR-TyDi, NQ, MKQA, demo)  + retriever top-k   -> fine-tuning / evaluation FiD examples
    CLR-PT records with teacher passages (class-jax mine)     -> stage-1 FiD examples (passages fixed)
    the release's CLR-PT queries + rankings + psgs_w100.tsv   -> stage-1 FiD examples (passages fixed, no scores)
    MLQA-PT records (class-jax mine)      + retriever top-k   -> stage-2 FiD examples (own source passage excluded)

A retriever is anything with `top_k(queries, k) -> [(passage_ids, scores), ...]` best first (the stage-1 teacher
interface, class_jax.mining.teacher.Teacher; BM25Teacher is one). Passages are looked up by id in a mapping (e.g.
`load_passages` over an ingested corpus). `write_clr_pt_fid_files` / `write_mlqa_pt_fid_files` turn the output
of `class-jax mine` (class_jax/mining/dataset_io.py) into the per-language FiD directories the stage gin files name;
`write_release_clr_pt_fid_files` turns the authors' released stage-1 files (read by `release_formats`) into the
same directories.
"""

import itertools
import os
from typing import Collection, Iterable, Iterator, Mapping, Optional, Protocol, Sequence

from class_jax.corpus import corpus_io
from class_jax.fid import release_formats
from class_jax.fid.release_formats import ParallelQuery, Ranking
from class_jax.mining import dataset_io
from class_jax.corpus.types import Passage
from class_jax.runtime.errors import UserError
from class_jax.evaluation.records import GoldQuestion
from class_jax.tasks import fid_files
from class_jax.tasks.fid_files import FiDExample, FiDPassage


class Retriever(Protocol):
    """What the builders need from a retriever (class_jax.mining.teacher.Teacher satisfies it)."""

    def top_k(self, queries: Sequence[str], k: int) -> list[tuple[list[str], list[float]]]:
        """Per query, (passage ids, scores), best first."""


def load_passages(corpus_dir: str | os.PathLike, languages: Sequence[str],
                  only: Optional[Collection[str]] = None) -> dict[str, Passage]:
    """Passage id -> passage for the given languages of an ingested corpus (streamed; with `only`, just those ids)."""
    return {p.passage_id: p for lang in languages for p in corpus_io.iter_passages(corpus_dir, lang)
            if only is None or p.passage_id in only}


def _attach(passage_ids: Sequence[str], scores: Sequence[float], passages: Mapping[str, Passage],
            where: str) -> tuple[FiDPassage, ...]:
    attached = []
    for passage_id, score in zip(passage_ids, scores):
        passage = passages.get(passage_id)
        if passage is None:
            raise UserError(f"{where}: passage {passage_id!r} is not in the passage collection")
        attached.append(FiDPassage(id=passage_id, title=passage.title, text=passage.text, score=float(score)))
    return tuple(attached)


def _batches(items: Iterable, batch_size: int) -> Iterator[list]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, batch_size)):
        yield batch


def fid_examples_for_questions(questions: Iterable[GoldQuestion], retriever: Retriever,
                               passages: Mapping[str, Passage], k: int, *, with_target: bool = True,
                               batch_size: int = 256) -> Iterator[FiDExample]:
    """Attaches each question's top-k passages.

    Args:
      questions: the questions (query-level readers in tasks/query_sources.py).
      retriever: see the module docstring.
      passages: id -> passage.
      k: passages per question.
      with_target: train on the first answer (fine-tuning); False leaves the target empty (evaluation files).
      batch_size: questions per retriever call.

    Yields:
      FiD examples in question order.

    Raises:
      UserError: the retriever returns a passage id missing from `passages`.
    """
    for batch in _batches(questions, batch_size):
        retrieved = retriever.top_k([q.question for q in batch], k)
        for question, (ids, scores) in zip(batch, retrieved):
            yield FiDExample(id=question.id, lang=question.lang, question=question.question,
                             answers=tuple(question.answers), target=question.answers[0] if with_target else "",
                             passages=_attach(ids, scores, passages, f"question {question.id!r}"))


def _field(record: Mapping, name: str, where: str) -> str:
    value = record.get(name)
    if not isinstance(value, str):
        raise UserError(f"{where}: field {name!r} is missing or not a string")
    return value


def fid_examples_from_clr_pt(records: Iterable[Mapping], passages: Mapping[str, Passage], *,
                             answer_field: str = "answer") -> Iterator[FiDExample]:
    """Stage-1 examples from CLR-PT records carrying the teacher's passages (`class-jax mine` with a teacher).

    The query is the target-language cloze, the English query the English cloze, the passages and teacher scores
    the teacher's top k for the English cloze.

    Args:
      records: dicts with qid, lang, english_cloze, target_cloze, the answer field, teacher_passage_ids and
        teacher_scores (class_jax/mining/dataset_io.py CLR_PT_TEACHER_FEATURES).
      passages: id -> English passage.
      answer_field: the answer decoded from the target-language query: "answer" (the English anchor, what the
        English passages contain) or "target_answer".

    Yields:
      FiD examples in record order.

    Raises:
      UserError: a record lacks a field, or names a passage not in `passages`.
    """
    for number, record in enumerate(records, start=1):
        where = f"CLR-PT record {number} (qid {record.get('qid')!r})"
        ids, scores = record.get("teacher_passage_ids"), record.get("teacher_scores")
        if not isinstance(ids, (list, tuple)) or not isinstance(scores, (list, tuple)) or len(ids) != len(scores):
            raise UserError(f"{where}: needs teacher_passage_ids and teacher_scores of equal length (attach the "
                            f"teacher's passages first)")
        answer = _field(record, answer_field, where)
        yield FiDExample(id=_field(record, "qid", where), lang=_field(record, "lang", where),
                         question=_field(record, "target_cloze", where), answers=(answer,), target=answer,
                         english_question=_field(record, "english_cloze", where),
                         teacher_scores=tuple(float(s) for s in scores),
                         passages=_attach(ids, scores, passages, where))


def fid_examples_from_mlqa_pt(records: Iterable[Mapping], retriever: Retriever, passages: Mapping[str, Passage],
                              k: int, *, batch_size: int = 256,
                              source_field: Optional[str] = "source_passage_id") -> Iterator[FiDExample]:
    """Stage-2 examples from MLQA-PT records: the generated question with its top-k passages but its own source.

    Args:
      records: dicts with qid, lang, question, answer and the source passage id (class_jax/mining/dataset_io.py
        MLQA_PT_FEATURES).
      retriever: see the module docstring.
      passages: id -> passage.
      k: passages per question (k + 1 are retrieved so that dropping the source passage still leaves k).
      batch_size: questions per retriever call.
      source_field: the record field naming the source passage (None: none is excluded).

    Yields:
      FiD examples in record order.

    Raises:
      UserError: a record lacks a field, or the retriever names an unknown passage.
    """
    numbered = enumerate(records, start=1)
    for batch in _batches(numbered, batch_size):
        checked = []
        for number, record in batch:
            where = f"MLQA-PT record {number} (qid {record.get('qid')!r})"
            source = (record.get(source_field) or "") if source_field else ""
            checked.append((where, _field(record, "qid", where), _field(record, "lang", where),
                            _field(record, "question", where), _field(record, "answer", where), source))
        retrieved = retriever.top_k([item[3] for item in checked], k + 1)
        for (where, qid, lang, question, answer, source), (ids, scores) in zip(checked, retrieved):
            kept = [(i, s) for i, s in zip(ids, scores) if i != source][:k]
            yield FiDExample(id=qid, lang=lang, question=question, answers=(answer,), target=answer,
                             source_passage_id=source if source_field else None,
                             passages=_attach([i for i, _ in kept], [s for _, s in kept], passages, where))


def _mined_records(mined_root: str, dataset: str, lang: str) -> Iterator[dict]:
    """The records `class-jax mine` wrote for one dataset and language.

    Raises:
      UserError: the language has no shard of that dataset.
    """
    if not dataset_io.jsonl_shards(mined_root, dataset, lang):
        raise UserError(f"{dataset_io.join(mined_root, dataset, lang)}: no mined {dataset} records for {lang!r} "
                        f"(run `class-jax mine --langs {lang}` with the stage that writes them)")
    return dataset_io.read_dataset(mined_root, dataset, lang)


def _with_retrieved_passages(records: Iterable[Mapping], retriever: Retriever, k: int,
                             batch_size: int = 256) -> Iterator[dict]:
    """Mined clr_pt records with a retriever's top k for their English clozes as the teacher's passages."""
    for batch in _batches(records, batch_size):
        retrieved = retriever.top_k([str(record.get("english_cloze", "")) for record in batch], k)
        for record, (ids, scores) in zip(batch, retrieved):
            yield {**record, "teacher_passage_ids": list(ids), "teacher_scores": [float(s) for s in scores]}


def write_clr_pt_fid_files(mined_root: str, passages: Mapping[str, Passage], out_template: str,
                           languages: Sequence[str], *, num_passages: int, num_shards: int = 1,
                           answer_field: str = "answer", overwrite: bool = False,
                           retriever: Optional[Retriever] = None) -> dict[str, dict]:
    """Stage-1 FiD directories ("{lang}" in `out_template`) from `class-jax mine`'s CLR-PT records.

    Args:
      mined_root: `class-jax mine`'s output.
      passages: id -> English passage.
      out_template: output directory with "{lang}".
      languages: the languages.
      num_passages: k.
      num_shards: shards per directory.
      answer_field: see `fid_examples_from_clr_pt`.
      overwrite: replace existing directories.
      retriever: None reads the clr_pt_teacher records (the BM25 teacher's passages, attached by `mine`); a
        retriever (e.g. an index of a neural teacher) retrieves the top k for the English clozes of the clr_pt
        records instead.

    Returns:
      lang -> the written manifest.

    Raises:
      UserError: a language without mined records, or a bad record (see `fid_examples_from_clr_pt`).
    """
    dataset = "clr_pt_teacher" if retriever is None else "clr_pt"
    manifests = {}
    for lang in languages:
        records = _mined_records(mined_root, dataset, lang)
        if retriever is not None:
            records = _with_retrieved_passages(records, retriever, num_passages)
        examples = fid_examples_from_clr_pt(records, passages, answer_field=answer_field)
        manifests[lang] = fid_files.write_fid_examples(
            examples, out_template.format(lang=lang), num_shards, num_passages=num_passages, overwrite=overwrite,
            metadata={"source": dataset_io.join(mined_root, dataset, lang), "answer_field": answer_field,
                      "passages": "mined (BM25 teacher)" if retriever is None else "retrieved at build time"})
    return manifests


def write_mlqa_pt_fid_files(mined_root: str, retriever: Retriever, passages: Mapping[str, Passage],
                            out_template: str, languages: Sequence[str], *, num_passages: int, num_shards: int = 1,
                            overwrite: bool = False) -> dict[str, dict]:
    """Stage-2 FiD directories ("{lang}" in `out_template`) from `class-jax mine`'s mlqa_pt records, with the
    retriever's passages (the initial retrieval; refresh rounds write their own).

    Returns:
      lang -> the written manifest.

    Raises:
      UserError: a language without mined records, or a bad record (see `fid_examples_from_mlqa_pt`).
    """
    # The records' `answer` is the target either way; English-answer data (`mine --mlqa_pt_answer_lang en`) says
    # so in the mined manifest, and the FiD manifest repeats it for provenance.
    mined = (dataset_io.read_json(dataset_io.join(mined_root, "manifest.json")) or {}).get("datasets", {})
    answer_lang = mined.get("mlqa_pt", {}).get("answer_lang")
    manifests = {}
    for lang in languages:
        examples = fid_examples_from_mlqa_pt(_mined_records(mined_root, "mlqa_pt", lang), retriever, passages,
                                             num_passages)
        metadata = {"source": dataset_io.join(mined_root, "mlqa_pt", lang)}
        if answer_lang:
            metadata["answer_lang"] = answer_lang
        manifests[lang] = fid_files.write_fid_examples(
            examples, out_template.format(lang=lang), num_shards, num_passages=num_passages, overwrite=overwrite,
            metadata=metadata)
    return manifests


def write_question_fid_files(questions: Sequence[GoldQuestion], retriever: Retriever, passages: Mapping[str, Passage],
                             out_dir: str, *, num_passages: int, with_target: bool, num_shards: int = 1,
                             overwrite: bool = False) -> dict:
    """One FiD directory of questions with the retriever's top k (fine-tuning, or evaluation without targets).

    Returns:
      The written manifest.

    Raises:
      UserError: the retriever returns a passage id missing from `passages`.
    """
    return fid_files.write_fid_examples(
        fid_examples_for_questions(questions, retriever, passages, num_passages, with_target=with_target),
        out_dir, num_shards, num_passages=num_passages, overwrite=overwrite)


def fid_examples_from_release_clr_pt(rankings: Iterable[Ranking], queries: Mapping[str, ParallelQuery],
                                     passages: Mapping[str, Passage], lang: str, k: int,
                                     rankings_file: str = "rankings") -> Iterator[FiDExample]:
    """Stage-1 examples from the release's parallel queries and the teacher's rankings (`release_formats`).

    The query is the translation with the answer masked as the release masks it (`_X_`), the English query the
    English cloze, the target the answer, the passages the ranking's first k in its order. There are no teacher
    scores (the release's neural teacher scores the passages during training), and passage scores are 0.

    Args:
      rankings: the rankings of this language's queries, in the order to write.
      queries: qid -> query; every ranking's qid must be here.
      passages: id -> passage; every id of a ranking's first k must be here.
      lang: the queries' language.
      k: passages per query.
      rankings_file: the rankings' file, for messages.

    Yields:
      FiD examples in ranking order.

    Raises:
      UserError: a ranking names a query or passage that is not given.
    """
    for ranking in rankings:
        where = f"{rankings_file}: entry [{ranking.index}] (qid {ranking.qid!r})"
        query = queries.get(ranking.qid)
        if query is None:
            raise UserError(f"{where}: no such qid among the queries")
        ids = ranking.passage_ids[:k]
        yield FiDExample(id=query.qid, lang=lang, question=query.masked_translation, answers=(query.answer,),
                         target=query.answer, english_question=query.english_cloze,
                         passages=_attach(ids, [0.0] * len(ids), passages, where))


def _rankings_by_language(rankings_paths: Mapping[str, str], queries_paths: Mapping[str, str],
                          queries: Mapping[str, Mapping[str, ParallelQuery]],
                          k: int) -> dict[str, list[Ranking]]:
    """Reads each rankings file once and gives each ranking to the language whose queries hold its qid.

    Returns:
      lang -> its rankings in file order, each cut to its first k ids.

    Raises:
      UserError: a bad rankings file, or a ranking whose qid is in none (or several) of the queries files that
        share its rankings file.
    """
    by_lang: dict[str, list[Ranking]] = {lang: [] for lang in rankings_paths}
    for path in dict.fromkeys(rankings_paths.values()):
        sharing = [lang for lang, other in rankings_paths.items() if other == path]
        for ranking in release_formats.read_rankings(path, max_passages=k):
            owners = [lang for lang in sharing if ranking.qid in queries[lang]]
            if len(owners) != 1:
                files = ", ".join(queries_paths[lang] for lang in (owners or sharing))
                problem = "no such qid in" if not owners else "the qid is in several queries files:"
                raise UserError(f"{path}: entry [{ranking.index}] (qid {ranking.qid!r}): {problem} {files}")
            by_lang[owners[0]].append(ranking)
    return by_lang


def write_release_clr_pt_fid_files(queries_template: str, rankings_template: str, out_template: str,
                                   languages: Sequence[str], *, num_passages: int,
                                   passages_file: Optional[str] = None, corpus_dir: Optional[str] = None,
                                   passage_langs: Sequence[str] = ("en",), num_shards: int = 1,
                                   overwrite: bool = False) -> dict[str, dict]:
    """Stage-1 FiD directories from the authors' released CLR-PT files (see `release_formats`).

    "{lang}" in a template is replaced by each language. The queries files must differ per language (they hold no
    language); one rankings file may serve several languages, each ranking going to the language whose queries
    hold its qid. The passages are read once, keeping only those the rankings' first k name. Queries without a
    ranking are not written (the release trains on the ranked queries only) and are counted in the manifest's
    metadata, with short rankings (fewer than k ids) and the translations that had the answer masked.

    Args:
      queries_template: the parallel-queries file(s), `mss.parallel.train.txt`.
      rankings_template: the ranking JSON file(s), `mss.parallel.train.json`.
      out_template: the output directories.
      languages: the languages to build.
      num_passages: k.
      passages_file: DPR-style `psgs_w100.tsv` holding the ranked passages; or
      corpus_dir: a corpus directory holding them (e.g. `class-jax import-corpus --format dpr` of that file),
        read in `passage_langs`.
      passage_langs: the corpus languages to read with `corpus_dir`.
      num_shards: TFRecord shards per directory.
      overwrite: replace complete directories.

    Returns:
      lang -> the written manifest.

    Raises:
      UserError: a bad file (see `release_formats`), a ranking whose qid is in no queries file, a ranked passage
        missing from the passages, a language none of whose queries is ranked, or neither or both passage
        sources.
    """
    if (passages_file is None) == (corpus_dir is None):
        raise UserError("give the passages as exactly one of a passages file or a corpus directory")
    languages = list(dict.fromkeys(languages))
    queries_paths = {lang: queries_template.replace("{lang}", lang) for lang in languages}
    rankings_paths = {lang: rankings_template.replace("{lang}", lang) for lang in languages}
    if len(set(queries_paths.values())) < len(queries_paths):
        raise UserError(f"{queries_template}: one queries file for the languages {', '.join(languages)}; a queries "
                        f"file holds no language, so its path needs {{lang}} (or build one language)")
    queries = {lang: release_formats.read_parallel_queries(queries_paths[lang]) for lang in languages}
    rankings = _rankings_by_language(rankings_paths, queries_paths, queries, num_passages)
    for lang in languages:
        if not rankings[lang]:
            raise UserError(f"{rankings_paths[lang]}: ranks none of the {len(queries[lang])} queries of "
                            f"{queries_paths[lang]}")
    wanted = {pid for ranked in rankings.values() for ranking in ranked for pid in ranking.passage_ids}
    if passages_file is not None:
        source = passages_file
        passages = release_formats.read_passages(passages_file, wanted)
    else:
        source = f"the corpus {corpus_dir} ({', '.join(passage_langs)})"
        passages = load_passages(corpus_dir, passage_langs, only=wanted)
    missing = len(wanted) - len(passages)
    if missing:
        for lang in languages:
            for ranking in rankings[lang]:
                absent = next((pid for pid in ranking.passage_ids if pid not in passages), None)
                if absent is not None:
                    raise UserError(f"{rankings_paths[lang]}: entry [{ranking.index}] (qid {ranking.qid!r}): passage "
                                    f"{absent!r} is not in {source} ({missing} ranked passage ids are missing in all)")
    manifests = {}
    for lang in languages:
        ranked = {ranking.qid for ranking in rankings[lang]}
        unranked = [qid for qid in queries[lang] if qid not in ranked]
        metadata = {
            "source": "release", "queries": queries_paths[lang], "rankings": rankings_paths[lang],
            "passages": passages_file if passages_file is not None else corpus_dir,
            "ranked_queries": len(ranked), "unranked_queries": len(unranked), "unranked_examples": unranked[:5],
            "short_rankings": sum(len(r.passage_ids) < num_passages for r in rankings[lang]),
            "masked_translations": sum(queries[lang][r.qid].answer in queries[lang][r.qid].translation
                                       for r in rankings[lang]),
        }
        examples = fid_examples_from_release_clr_pt(rankings[lang], queries[lang], passages, lang, num_passages,
                                                    rankings_paths[lang])
        manifests[lang] = fid_files.write_fid_examples(
            examples, out_template.replace("{lang}", lang), num_shards, num_passages=num_passages,
            overwrite=overwrite, metadata=metadata)
    return manifests
