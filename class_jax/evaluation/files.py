"""Reading gold and prediction files, with one-line errors that name the file and the record at fault.

Every scorer reads its files through `read_json_file` (one JSON document) or `iter_jsonl` (JSON Lines), plain or
gzip (recognised by its magic bytes). Whatever a file holds, they either return what a strict reading of it
gives or raise a one-line `UserError` naming the file, the line or record, and the problem: a file that cannot be
opened (missing, a directory, a device, a symlink loop, a name too long, no permission), corrupt or truncated
gzip data, bytes that are not UTF-8, a UTF-8 byte-order mark, an empty file, invalid JSON, nesting too deep for
the parser, an integer of more digits than Python converts (4,300: the official scripts could not read it
either), a string holding a lone surrogate (a `\\ud800` escape, which no output can print), or a key repeated
inside one record.

Nothing is dropped silently: a repeated id at the top level of a `{question id: answer}` prediction file is kept
as `json.load` keeps it (the later value) and listed in `duplicate_ids`; a record of the wrong shape stops the run
with a `UserError`.
"""

import contextlib
import gzip
import io
import json
import math
import os
import pathlib
import re
import stat
import zlib
from typing import Any, BinaryIO, Iterator

from class_jax.runtime.errors import UserError
from class_jax.evaluation.records import AnswerPredictions, GoldQuestion, MkqaPrediction, RetrievalPrediction

_GZIP_MAGIC = b"\x1f\x8b"

# Python's own limit for int <-> str conversion (`sys.get_int_max_str_digits()` by default): the official scripts'
# `json.load` fails beyond it, so no file they read is refused here.
MAX_INTEGER_DIGITS = 4300

# One JSON Lines record may be this long at most (real records are kilobytes); stops endless input early.
MAX_LINE_BYTES = 256 * 2**20

# Where text mode ends a line.
_LINE_BREAK = re.compile("\r\n|\r|\n")

# A `\uD800`-`\uDFFF` escape: the only way a JSON text can produce a lone surrogate (UTF-8 cannot encode one).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_SURROGATE = re.compile("[\ud800-\udfff]")

# What reading a (possibly gzip) file may raise besides JSON errors; `zlib.error` is not an OSError.
_READ_ERRORS = (UnicodeDecodeError, EOFError, OSError, zlib.error)


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


class _IntegerTooLong(ValueError):
    """Raised by the JSON integer hook for an integer of more than MAX_INTEGER_DIGITS digits."""


def json_type_name(value: Any) -> str:
    """The JSON name of a parsed value's type ("object", "array", "string", ...), for messages."""
    for python_type, name in ((bool, "boolean"), (dict, "object"), (list, "array"), (str, "string"),
                              (int, "number"), (float, "number")):
        if isinstance(value, python_type):
            return name
    return "null" if value is None else type(value).__name__


def describe_value(value: Any, limit: int = 60) -> str:
    """A short, printable description of a parsed JSON value for messages (never the whole of a huge value).

    Args:
        value: the value.
        limit: how many characters of a string (or digits of a number) to show.

    Returns:
        e.g. `'abc'`, `'aaaa...' (1000000 characters)`, `null`, `a JSON array`.
    """
    if isinstance(value, str):
        shown = repr(value[:limit]) + (f"... ({len(value)} characters)" if len(value) > limit else "")
        return shown
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, (int, float)):
        shown = repr(value)
        return shown if len(shown) <= limit else f"a number of {len(shown)} digits"
    return f"a JSON {json_type_name(value)}"


def display_path(path: str | os.PathLike) -> str:
    """The file name for a message, with the middle of an absurdly long one left out."""
    name = os.fspath(path)
    name = name if isinstance(name, str) else repr(name)
    return name if len(name) <= 200 else f"{name[:120]}...{name[-60:]} ({len(name)} characters)"


def _read_error(path: pathlib.Path, error: BaseException, where: str = "") -> UserError:
    """The one-line error for an exception raised while reading `path` (`where`: e.g. " line 3")."""
    prefix = f"{display_path(path)}:{where}"
    if isinstance(error, EOFError):
        return UserError(f"{prefix} the gzip data ends early (truncated file)")
    if isinstance(error, (gzip.BadGzipFile, zlib.error)):
        return UserError(f"{prefix} corrupt gzip data ({error})")
    if isinstance(error, OSError):
        return UserError(f"{prefix} cannot be read: {error.strerror or error}")
    return UserError(f"{prefix} cannot be read: {error}")


def _open_binary(path: pathlib.Path) -> io.BufferedReader:
    """Opens a file for reading bytes, turning every way that can fail into a one-line `UserError`."""
    try:
        handle = open(path, "rb")  # pylint: disable=consider-using-with  (closed by the caller)
    except FileNotFoundError as e:
        raise UserError(f"{display_path(path)}: no such file") from e
    except IsADirectoryError as e:
        raise UserError(f"{display_path(path)}: is a directory, expected a file") from e
    except PermissionError as e:
        raise UserError(f"{display_path(path)}: permission denied") from e
    except OSError as e:  # file name too long, symlink loop, ...
        raise UserError(f"{display_path(path)}: cannot be opened: {e.strerror or e}") from e
    except ValueError as e:  # e.g. an embedded NUL character
        raise UserError(f"{display_path(path)}: not a usable file name: {e}") from e
    mode = os.fstat(handle.fileno()).st_mode
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISSOCK(mode):
        handle.close()
        raise UserError(f"{display_path(path)}: is a device or socket, expected a file")
    return handle


@contextlib.contextmanager
def _open_bytes(path: pathlib.Path) -> Iterator[BinaryIO]:
    """Opens a file that may be gzip-compressed (recognised by its magic bytes, not its name) for reading bytes.

    The file is opened once (so a pipe works too); reading errors (`_READ_ERRORS`) are left to the caller, which
    knows the line.
    """
    with _open_binary(path) as binary:
        try:
            compressed = binary.peek(2)[:2] == _GZIP_MAGIC
        except OSError as e:
            raise _read_error(path, e) from e
        if not compressed:
            yield binary
            return
        with gzip.GzipFile(fileobj=binary, mode="rb") as decompressed:
            yield decompressed


def _decode(data: bytes, path: pathlib.Path, where: str = "") -> str:
    """UTF-8 bytes -> text, or a `UserError` naming the line of the first undecodable byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise UserError(f"{display_path(path)}:{where or f' line {line}:'} not UTF-8 text (byte "
                        f"0x{data[e.start]:02x} cannot be decoded); the scorers read UTF-8 JSON, plain or gzip"
                        ) from e


def _find_lone_surrogate(value: Any) -> str | None:
    """The first string (value or key) of a parsed JSON value that holds a lone surrogate, or None."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return item
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def _parse_int(digits: str) -> int:
    if len(digits) - digits.startswith("-") > MAX_INTEGER_DIGITS:
        raise _IntegerTooLong(f"an integer of {len(digits.lstrip('-'))} digits (at most {MAX_INTEGER_DIGITS} "
                              "can be read)")
    return int(digits)


def parse_json_text(text: str, where: str, *, single_line: bool = False, allow_top_level_duplicates: bool = False
                    ) -> Any:
    """Parses one JSON text strictly, with messages that say where and what.

    Args:
        text: the JSON text.
        where: "FILE" or "FILE: line N", the start of every message.
        single_line: the text is one line of a JSON Lines file (messages then give the column only).
        allow_top_level_duplicates: keep (and list in `duplicate_keys`) keys repeated in the outermost object;
            a key repeated in any other object is always an error.

    Returns:
        The parsed value; objects are dicts with a `duplicate_keys` list.

    Raises:
        UserError: for a byte-order mark, invalid JSON, nesting too deep, a too long integer, a lone surrogate or
            a repeated key.
    """
    if text.startswith("\ufeff"):
        raise UserError(f"{where}: starts with a UTF-8 byte-order mark (BOM), which JSON does not allow; save the "
                        "file as UTF-8 without BOM")
    repeated: list[_DuplicateKeyDict] = []

    def make_object(pairs: list[tuple[str, Any]]) -> _DuplicateKeyDict:
        obj = _DuplicateKeyDict(pairs)
        if obj.duplicate_keys:
            repeated.append(obj)
        return obj

    try:
        value = json.loads(text, object_pairs_hook=make_object, parse_int=_parse_int)
    except json.JSONDecodeError as e:
        if single_line:
            raise UserError(f"{where}: not valid JSON at column {e.colno}: {e.msg}") from e
        raise UserError(f"{where}: not valid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from e
    except RecursionError as e:
        raise UserError(f"{where}: JSON nested too deeply to be read (arrays / objects inside each other)") from e
    except _IntegerTooLong as e:
        raise UserError(f"{where}: {e}") from e
    except ValueError as e:
        raise UserError(f"{where}: not valid JSON: {e}") from e
    for obj in repeated:
        if not (allow_top_level_duplicates and obj is value):
            raise UserError(f"{where}: key {describe_value(obj.duplicate_keys[0])} appears twice in one object")
    if _SURROGATE_ESCAPE.search(text):
        bad = _find_lone_surrogate(value)
        if bad is not None:
            raise UserError(f"{where}: a string holds a lone surrogate escape (\\ud800-\\udfff without its pair), "
                            f"which is not Unicode text: {describe_value(bad)}")
    return value


def read_json_file(path: str | pathlib.Path) -> Any:
    """Reads one JSON document; objects come back as dicts with a `duplicate_keys` list.

    Keys repeated in the outermost object are kept (the later value) and listed in its `duplicate_keys`; keys
    repeated in an inner object are an error.

    Args:
        path: the file (plain or gzip).

    Returns:
        The parsed document.

    Raises:
        UserError: when the file cannot be opened or read, is empty, or is not valid JSON (see the module
            docstring for the whole list).
    """
    path = pathlib.Path(path)
    with _open_bytes(path) as f:
        try:
            data = f.read()
        except _READ_ERRORS as e:
            raise _read_error(path, e) from e
    content = _decode(data, path)
    if not content.strip():
        raise UserError(f"{display_path(path)}: the file is empty")
    return parse_json_text(content, display_path(path), allow_top_level_duplicates=True)


def iter_jsonl(path: str | pathlib.Path) -> Iterator[tuple[int, Any]]:
    """Yields (line number, parsed record) for each non-blank line of a JSON Lines file (plain or gzip).

    Lines end at "\\n", "\\r\\n" or "\\r", as in a file opened in text mode (the official scripts' reading).

    Args:
        path: the file.

    Yields:
        1-based line numbers and the parsed values (a file with no record yields nothing).

    Raises:
        UserError: when the file cannot be opened or read, or a line is not UTF-8, not valid JSON or too long (see
            the module docstring).
    """
    path = pathlib.Path(path)
    with _open_bytes(path) as f:
        line_number = 0
        while True:
            try:
                data = f.readline(MAX_LINE_BYTES + 1)
            except _READ_ERRORS as e:
                raise _read_error(path, e, f" line {line_number + 1}:") from e
            if not data:
                return
            if len(data) > MAX_LINE_BYTES:
                raise UserError(f"{display_path(path)}: line {line_number + 1}: longer than {MAX_LINE_BYTES:,} "
                                "bytes (one JSON record per line is expected)")
            text = _decode(data, path, f" line {line_number + 1}:")
            lines = _LINE_BREAK.split(text.rstrip("\r\n")) if "\r" in text.rstrip("\r\n") else [text]
            for line in lines:
                line_number += 1
                if line.strip():
                    yield line_number, parse_json_text(line, f"{display_path(path)}: line {line_number}",
                                                       single_line=True)


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
        raise UserError(f"{where}: 'id' must be a string, got {describe_value(question_id)}")
    lang = record["lang"]
    if not isinstance(lang, str) or not lang.strip():
        raise UserError(f"{where}: 'lang' must be a non-empty string, got {describe_value(lang)}")
    answers = record["answers"]
    if isinstance(answers, str):
        answers = [answers]
    if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
        raise UserError(f"{where}: 'answers' must be a non-empty list of strings, got {_describe_list(answers)}")
    question = record.get("question")
    if question is not None and not isinstance(question, str):
        raise UserError(f"{where}: 'question' must be a string when given, got {describe_value(question)}")
    return GoldQuestion(id=str(question_id), lang=lang.strip(), answers=tuple(answers), question=question or "",
                        line=line)


def _describe_list(value: Any) -> str:
    """`describe_value`, but for a list the first element that is not a string (or "an empty list")."""
    if not isinstance(value, list):
        return describe_value(value)
    if not value:
        return "an empty list"
    bad = next((index for index, item in enumerate(value) if not isinstance(item, str)), None)
    return describe_value(value) if bad is None else f"element {bad} is {describe_value(value[bad])}"


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
    answers = {str(key): _answer_text(value, f"{source}: record {describe_value(key)}", allow_answer_objects)
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
            raise UserError(f"{where}: 'id' must be a string, got {describe_value(record['id'])}")
        where = f"{path}: record {index} (id {describe_value(record['id'])})"
        if not isinstance(record["lang"], str):
            raise UserError(f"{where}: 'lang' must be a string, got {describe_value(record['lang'])}")
        passages = record["ctxs"]
        if not isinstance(passages, list) or not all(isinstance(p, str) for p in passages):
            raise UserError(f"{where}: 'ctxs' must be a list of passage texts (strings), as the official scorer "
                            f"tokenises them ({_describe_list(passages)}); convert {{'title', 'text'}} objects to "
                            "their text first")
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
        raise UserError(f"{where}: expected an object with example_id and prediction, got a JSON "
                        f"{json_type_name(record)}")
    for key in ("example_id", "prediction"):
        if key not in record:
            raise UserError(f"{where}: missing field {key!r}")
    example_id = record["example_id"]
    if isinstance(example_id, bool) or not isinstance(example_id, (str, int)):
        raise UserError(f"{where}: 'example_id' must be a string or an integer, got {describe_value(example_id)}")
    prediction = record["prediction"]
    if prediction is not None and not isinstance(prediction, str):
        raise UserError(f"{where}: 'prediction' must be a string or null, got {describe_value(prediction)}")
    binary = record.get("binary_answer")
    if binary is not None and not isinstance(binary, str):
        raise UserError(f"{where}: 'binary_answer' must be \"yes\", \"no\", \"\" or null")
    binary = binary.lower() if binary else None
    if binary not in ("yes", "no", None):
        raise UserError(f"{where}: 'binary_answer' must be \"yes\", \"no\", \"\" or null, got {describe_value(binary)}")
    probability = record.get("no_answer_prob", 0)
    # An int is compared as it is: float(10**400) would overflow.
    if (isinstance(probability, bool) or not isinstance(probability, (int, float))
            or (isinstance(probability, float) and not math.isfinite(probability)) or not 0 <= probability <= 1):
        raise UserError(f"{where}: 'no_answer_prob' must be a finite number between 0 and 1 (a probability), got "
                        f"{describe_value(probability)}")
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
    if not predictions:
        raise UserError(f"{path}: no prediction records in the file")
    return predictions, tuple(duplicates)
