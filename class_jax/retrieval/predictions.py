"""Questions in, retrieval results out: XOR-TyDi query files and the XOR-Retrieve prediction format.

Input: JSON Lines with at least `id`, `question` and `lang` per line (the XOR-TyDi files; other fields such as
`answers` are ignored). Language codes are stripped of spaces (the train file has `" ar"`).

Outputs:
  * the official XOR-Retrieve prediction file: one JSON array of `{"id", "lang", "ctxs": [passage text, ...]}` in
    rank order, as `eval_xor_retrieve.py` (and `class-jax eval-xor-retrieve`) read it; ctxs hold the passage
    texts only, as the official baselines' files do (the scorer tokenises them);
  * a details file, JSON Lines: `{"id", "lang", "question", "passages": [{"id", "score", "title"}]}`.
"""

import dataclasses
import json
import os
from typing import Any, Mapping, Sequence

import numpy as np

from class_jax.corpus import corpus_io
from class_jax.runtime.errors import UserError
from class_jax.evaluation import files
from class_jax.retrieval.corpus_source import PassageRecord


@dataclasses.dataclass(frozen=True)
class Query:
    """One question to retrieve for."""

    id: str
    question: str
    lang: str


def load_queries(path: str | os.PathLike) -> list[Query]:
    """Reads a query file (JSON Lines, plain or gzip), in file order.

    Raises:
      UserError: a missing file, invalid JSON, or a record without a string id, question or lang (file and line
        named); an empty file; a repeated id.
    """
    queries, seen = [], {}
    for line, record in files.iter_jsonl(path):
        where = f"{path}: line {line}"
        if not isinstance(record, dict):
            raise UserError(f"{where}: expected a JSON object with id, question and lang")
        for field in ("id", "question", "lang"):
            if field not in record:
                raise UserError(f"{where}: missing field {field!r}")
        question_id, question, lang = record["id"], record["question"], record["lang"]
        if isinstance(question_id, bool) or not isinstance(question_id, (str, int)):
            raise UserError(f"{where}: 'id' must be a string")
        if not isinstance(question, str) or not question.strip():
            raise UserError(f"{where}: 'question' must be a non-empty string")
        if not isinstance(lang, str) or not lang.strip():
            raise UserError(f"{where}: 'lang' must be a non-empty string")
        question_id = str(question_id)
        if question_id in seen:
            raise UserError(f"{where}: id {question_id!r} already on line {seen[question_id]}")
        seen[question_id] = line
        queries.append(Query(question_id, question, lang.strip()))
    if not queries:
        raise UserError(f"{path}: no queries in the file")
    return queries


def write_predictions(path: str | os.PathLike, details_path: str | os.PathLike, queries: Sequence[Query],
                      scores: np.ndarray, passage_ids: np.ndarray, rows: np.ndarray,
                      records: Mapping[int, PassageRecord]) -> None:
    """Writes the XOR-Retrieve prediction file and the details file, atomically.

    Args:
      path: the official-format JSON file.
      details_path: the JSON Lines details file.
      queries: the queries, in order.
      scores: [queries, k] scores.
      passage_ids: [queries, k] passage ids (from the index).
      rows: [queries, k] index rows.
      records: row -> corpus record of every row in `rows`.

    Raises:
      UserError: the corpus record of a row has another id than the index (the corpus changed since indexing).
    """
    for row, passage_id in zip(rows.reshape(-1), passage_ids.reshape(-1)):
        record = records[int(row)]
        if record.passage_id != passage_id:
            raise UserError(f"corpus row {int(row)} is passage {record.passage_id!r} but the index has "
                            f"{passage_id!r} there: the corpus changed since it was indexed")
    predictions: list[dict[str, Any]] = []
    with corpus_io.atomic_write(details_path) as details:
        for query, query_scores, query_rows in zip(queries, scores, rows):
            hits = [records[int(r)] for r in query_rows]
            predictions.append({"id": query.id, "lang": query.lang, "ctxs": [hit.text for hit in hits]})
            details.write(json.dumps({
                "id": query.id, "lang": query.lang, "question": query.question,
                "passages": [{"id": hit.passage_id, "score": float(score), "title": hit.title}
                             for hit, score in zip(hits, query_scores)]}, ensure_ascii=False) + "\n")
    with corpus_io.atomic_write(path) as out:
        json.dump(predictions, out, ensure_ascii=False)
        out.write("\n")


def details_path_for(path: str | os.PathLike) -> str:
    """Default details file next to a prediction file: `pred.json` -> `pred.details.jsonl`."""
    text = os.fspath(path)
    return (text[:-len(".json")] if text.endswith(".json") else text) + ".details.jsonl"
