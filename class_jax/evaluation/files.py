"""Reading gold and prediction files, with one-line errors that name the file and the record at fault.

Nothing is dropped silently: a repeated id is kept as `json.load` keeps it (the later value) and listed in
`duplicate_ids`; a record of the wrong shape stops the run with a `UserError`.
"""

import gzip
import json
import math
import pathlib
from typing import Any, Iterator

from class_jax.runtime.errors import UserError
from class_jax.evaluation.records import AnswerPredictions, GoldQuestion, MkqaPrediction, RetrievalPrediction

_GZIP_MAGIC = b"\x1f\x8b"


class _DuplicateKeyDict(dict):
    """A JSON object that remembers which keys it saw more than once (the value kept is the last one)."""

    def __init__(self, pairs: list[tuple[str, Any]]):
        super().__init__(pairs)
        seen: set[str] = set()
        self.duplicate_keys: list[str] = []
        for key, _ in pairs:
            if key in seen:
                self.duplicate_keys.append(key)
            seen.add(key)


def json_type_name(value: Any) -> str:
    """The JSON name of a parsed value's type ("object", "array", "string", ...), for messages."""
    for python_type, name in ((bool, "boolean"), (dict, "object"), (list, "array"), (str, "string"),
                              (int, "number"), (float, "number")):
        if isinstance(value, python_type):
            return name
    return "null" if value is None else type(value).__name__


def _open_text(path: pathlib.Path):
    """Opens a text file that may be gzip-compressed (recognised by its magic bytes, not its name)."""
    try:
        with open(path, "rb") as probe:
            compressed = probe.read(2) == _GZIP_MAGIC
    except FileNotFoundError as e:
        raise UserError(f"{path}: no such file") from e
    except IsADirectoryError as e:
        raise UserError(f"{path}: is a directory, expected a file") from e
    if compressed:
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def read_json_file(path: str | pathlib.Path) -> Any:
    """Reads one JSON document; objects come back as dicts with a `duplicate_keys` list.

    Args:
        path: the file (plain or gzip).

    Returns:
        The parsed document.

    Raises:
        UserError: when the file is missing, not UTF-8 or not valid JSON (with line and column).
    """
    path = pathlib.Path(path)
    with _open_text(path) as f:
        try:
            return json.load(f, object_pairs_hook=_DuplicateKeyDict)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}: not valid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from e
        except (UnicodeDecodeError, EOFError, OSError) as e:
            raise UserError(f"{path}: cannot be read as UTF-8 JSON: {e}") from e


def iter_jsonl(path: str | pathlib.Path) -> Iterator[tuple[int, Any]]:
    """Yields (line number, parsed record) for each non-blank line of a JSON Lines file (plain or gzip).

    Args:
        path: the file.

    Yields:
        1-based line numbers and the parsed values.

    Raises:
        UserError: when the file is missing or a line is not valid JSON.
    """
    path = pathlib.Path(path)
    with _open_text(path) as f:
        try:
            for line_number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    yield line_number, json.loads(line)
                except json.JSONDecodeError as e:
                    raise UserError(f"{path}: line {line_number}: not valid JSON: {e.msg}") from e
        except (UnicodeDecodeError, EOFError, OSError) as e:
            raise UserError(f"{path}: cannot be read as UTF-8 JSON Lines: {e}") from e


def gold_question_from_record(record: Any, where: str, line: int = 0) -> GoldQuestion:
    """Validates one XOR-format gold record (`{"id", "lang", "answers", "question"?}`).

    A language code is stripped of surrounding spaces (the XOR-TyDi train file has `" ar"`), and a bare string
    answer is wrapped in a list, as the official XOR-Full scorer does.

    Args:
        record: the parsed JSON value.
        where: "FILE: line N" (or similar) for error messages.
        line: the record's line number, kept on the question.

    Returns:
        The question.

    Raises:
        UserError: when a field is missing or of the wrong type, or there is no answer.
    """
    if not isinstance(record, dict):
        raise UserError(f"{where}: expected a JSON object with id, lang and answers, got a JSON "
                        f"{json_type_name(record)}")
    for key in ("id", "lang", "answers"):
        if key not in record:
            raise UserError(f"{where}: missing field {key!r}")
    question_id = record["id"]
    if isinstance(question_id, bool) or not isinstance(question_id, (str, int)):
        raise UserError(f"{where}: 'id' must be a string, got a JSON {json_type_name(question_id)}")
    lang = record["lang"]
    if not isinstance(lang, str) or not lang.strip():
        raise UserError(f"{where}: 'lang' must be a non-empty string, got {lang!r}")
    answers = record["answers"]
    if isinstance(answers, str):
        answers = [answers]
    if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
        raise UserError(f"{where}: 'answers' must be a non-empty list of strings, got {answers!r:.80}")
    question = record.get("question", "")
    return GoldQuestion(id=str(question_id), lang=lang.strip(), answers=tuple(answers),
                        question=question if isinstance(question, str) else "", line=line)


def load_gold_questions(path: str | pathlib.Path) -> list[GoldQuestion]:
    """Reads an XOR-TyDi-format gold file (JSON Lines, plain or gzip).

    Args:
        path: the file.

    Returns:
        The questions in file order (repeated ids included: the scorers count them).

    Raises:
        UserError: for a missing file, invalid JSON, a malformed record or an empty file.
    """
    questions = [gold_question_from_record(record, f"{path}: line {line}", line)
                 for line, record in iter_jsonl(path)]
    if not questions:
        raise UserError(f"{path}: no gold questions in the file")
    return questions


def _answer_text(value: Any, where: str, allow_answer_objects: bool) -> str:
    if isinstance(value, str):
        return value
    if allow_answer_objects and isinstance(value, dict):
        if isinstance(value.get("answer"), str):
            return value["answer"]
        raise UserError(f"{where}: an answer object needs a string field 'answer'")
    expected = "a string or an object with a string 'answer'" if allow_answer_objects else "a string"
    raise UserError(f"{where}: the answer must be {expected}, got a JSON {json_type_name(value)}")


def answer_predictions_from_json(document: Any, source: str, allow_answer_objects: bool = False
                                 ) -> AnswerPredictions:
    """Validates an answer-prediction document of the official shape `{question id: answer}`.

    Args:
        document: the parsed JSON (from `read_json_file`, so repeated keys are known).
        source: the file name for messages.
        allow_answer_objects: accept `{"answer": text}` values too (the XOR-EnglishSpan scorer does).

    Returns:
        The predictions.

    Raises:
        UserError: when the document is not an object or a value is not an answer.
    """
    if not isinstance(document, dict):
        raise UserError(f"{source}: expected a JSON object {{question id: answer}}, got a JSON "
                        f"{json_type_name(document)}")
    answers = {str(key): _answer_text(value, f"{source}: record {key!r}", allow_answer_objects)
               for key, value in document.items()}
    duplicates = tuple(getattr(document, "duplicate_keys", ()))
    return AnswerPredictions(answers=answers, duplicate_ids=duplicates, source=source)


def load_answer_predictions(path: str | pathlib.Path, allow_answer_objects: bool = False) -> AnswerPredictions:
    """Reads an answer-prediction file `{question id: answer}` (XOR-Full / XOR-EnglishSpan / SQuAD shape).

    Args:
        path: the JSON file.
        allow_answer_objects: accept `{"answer": text}` values too.

    Returns:
        The predictions.

    Raises:
        UserError: for a missing file, invalid JSON or the wrong shape.
    """
    return answer_predictions_from_json(read_json_file(path), str(path), allow_answer_objects)


def load_retrieval_predictions(path: str | pathlib.Path) -> list[RetrievalPrediction]:
    """Reads an XOR-Retrieve prediction file: one JSON array of `{"id", "lang", "ctxs": [passage text, ...]}`.

    Args:
        path: the JSON file.

    Returns:
        The records in file order (repeated ids included: the official scorer counts each record).

    Raises:
        UserError: for a missing file, invalid JSON, or a record of the wrong shape (named by its index and id).
    """
    document = read_json_file(path)
    if not isinstance(document, list):
        raise UserError(f"{path}: expected a JSON array of {{\"id\", \"lang\", \"ctxs\"}} records, got a JSON "
                        f"{json_type_name(document)}")
    predictions = []
    for index, record in enumerate(document):
        where = f"{path}: record {index}"
        if not isinstance(record, dict):
            raise UserError(f"{where}: expected an object with id, lang and ctxs, got a JSON "
                            f"{json_type_name(record)}")
        for key in ("id", "lang", "ctxs"):
            if key not in record:
                raise UserError(f"{where}: missing field {key!r}")
        if isinstance(record["id"], bool) or not isinstance(record["id"], (str, int)):
            raise UserError(f"{where}: 'id' must be a string")
        where = f"{path}: record {index} (id {record['id']!r})"
        if not isinstance(record["lang"], str):
            raise UserError(f"{where}: 'lang' must be a string")
        passages = record["ctxs"]
        if not isinstance(passages, list) or not all(isinstance(p, str) for p in passages):
            raise UserError(f"{where}: 'ctxs' must be a list of passage texts (strings), as the official scorer "
                            "tokenises them; convert {'title', 'text'} objects to their text first")
        predictions.append(RetrievalPrediction(id=str(record["id"]), lang=record["lang"],
                                               passages=tuple(passages), index=index))
    return predictions


def mkqa_prediction_from_record(record: Any, where: str) -> MkqaPrediction:
    """Validates one record of Apple's MKQA prediction format.

    Args:
        record: the parsed JSON value.
        where: "FILE: line N" for messages.

    Returns:
        The prediction (binary_answer lowercased, None when empty; no_answer_prob 0 when absent).

    Raises:
        UserError: for a missing field or a value of the wrong type.
    """
    if not isinstance(record, dict):
        raise UserError(f"{where}: expected an object with example_id and prediction")
    for key in ("example_id", "prediction"):
        if key not in record:
            raise UserError(f"{where}: missing field {key!r}")
    example_id = record["example_id"]
    if isinstance(example_id, bool) or not isinstance(example_id, (str, int)):
        raise UserError(f"{where}: 'example_id' must be a string or an integer")
    prediction = record["prediction"]
    if prediction is not None and not isinstance(prediction, str):
        raise UserError(f"{where}: 'prediction' must be a string or null")
    binary = record.get("binary_answer")
    if binary is not None and not isinstance(binary, str):
        raise UserError(f"{where}: 'binary_answer' must be \"yes\", \"no\", \"\" or null")
    binary = binary.lower() if binary else None
    if binary not in ("yes", "no", None):
        raise UserError(f"{where}: 'binary_answer' must be \"yes\", \"no\", \"\" or null, got {binary!r}")
    probability = record.get("no_answer_prob", 0)
    if isinstance(probability, bool) or not isinstance(probability, (int, float)) or not math.isfinite(probability):
        raise UserError(f"{where}: 'no_answer_prob' must be a finite number")
    return MkqaPrediction(example_id=str(example_id), prediction=prediction or "", binary_answer=binary,
                          no_answer_prob=probability)


def load_mkqa_predictions(path: str | pathlib.Path) -> tuple[dict[str, MkqaPrediction], tuple[str, ...]]:
    """Reads one language's MKQA predictions.

    Two shapes are accepted: Apple's official JSON Lines (`{"example_id", "prediction", "binary_answer",
    "no_answer_prob"}` per line; binary_answer and no_answer_prob may be left out) for a `.jsonl` file, and the
    CORA shape `{example id: answer}` for a `.json` file (no binary answer, no-answer probability 0).

    Args:
        path: the file.

    Returns:
        (predictions by example id in file order, ids repeated after their first record). A repeated id keeps its
        later record, as Apple's reader does.

    Raises:
        UserError: for a missing file, invalid JSON or a record of the wrong shape.
    """
    path = pathlib.Path(path)
    if path.suffix == ".json":
        answers = answer_predictions_from_json(read_json_file(path), str(path))
        return ({i: MkqaPrediction(example_id=i, prediction=a) for i, a in answers.answers.items()},
                answers.duplicate_ids)
    predictions: dict[str, MkqaPrediction] = {}
    duplicates = []
    for line, record in iter_jsonl(path):
        prediction = mkqa_prediction_from_record(record, f"{path}: line {line}")
        if prediction.example_id in predictions:
            duplicates.append(prediction.example_id)
        predictions[prediction.example_id] = prediction
    return predictions, tuple(duplicates)
