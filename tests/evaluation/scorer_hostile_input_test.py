"""Malformed input through the real scorer commands: a one-line error naming the file (exit 2), or a counted skip.

Each case is a file users actually fed the scorers (corrupt gzip, nesting, huge numbers, odd file names, lone
surrogates, a million-character answer, ...), run through `class_jax.cli.main` exactly as the console script runs
it. A rejected file must give exit code 2, nothing on stdout, one line on stderr that names the file, and no
traceback; a skip-and-count case must score and report its count.
"""

import gzip
import json
import os
import pathlib
import time

import pytest

from class_jax import cli
from class_jax.evaluation import text

COMMANDS = ("eval-xor-full", "eval-xor-engspan", "eval-xor-retrieve", "eval-mkqa")

XOR_GOLD = [{"id": "q1", "lang": "ja", "answers": ["東京"], "question": "首都は?"},
            {"id": "q2", "lang": "fi", "answers": ["Helsinki"]}]
XOR_PRED = {"q1": "東京", "q2": "Helsinki"}
RETRIEVE_PRED = [{"id": "q1", "lang": "ja", "ctxs": ["東京 is the capital."]},
                 {"id": "q2", "lang": "fi", "ctxs": ["Helsinki is the capital of Finland."]}]


def _mkqa_record(example_id, answer, languages=("en", "ja")):
    return {"example_id": example_id, "query": "q",
            "queries": {lang: "q" for lang in languages},
            "answers": {lang: [{"type": "entity", "text": answer, "aliases": [answer.lower()]}] for lang in languages}}


MKQA_GOLD = [_mkqa_record(1, "Paris"), _mkqa_record(2, "Rome")]
MKQA_PRED = [{"example_id": 1, "prediction": "Paris", "no_answer_prob": 0.1},
             {"example_id": 2, "prediction": "Rome", "binary_answer": None, "no_answer_prob": 0.2}]


def _jsonl(records) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()


VALID_DATA = {command: _jsonl(MKQA_GOLD if command == "eval-mkqa" else XOR_GOLD) for command in COMMANDS}
VALID_PRED = {"eval-xor-full": json.dumps(XOR_PRED, ensure_ascii=False).encode(),
              "eval-xor-engspan": json.dumps(XOR_PRED, ensure_ascii=False).encode(),
              "eval-xor-retrieve": json.dumps(RETRIEVE_PRED, ensure_ascii=False).encode(),
              "eval-mkqa": _jsonl(MKQA_PRED)}


def _argv(command: str, data: str, pred: str, *extra: str) -> list[str]:
    argv = [command, "--data_file", data, "--pred_file", pred, *extra]
    return argv + ["--language", "en"] if command == "eval-mkqa" and "--language" not in extra else argv


def _write(path: pathlib.Path, content: bytes) -> str:
    path.write_bytes(content)
    return str(path)


def _run(capsys, argv):
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _assert_rejected(capsys, argv, names, message=""):
    code, out, err = _run(capsys, argv)
    assert "Traceback" not in err, err
    assert code == 2, (code, out, err)
    assert out == "", out
    assert len(err.strip().splitlines()) == 1, err
    assert names in err, err
    assert message in err, err
    assert len(err) < 1000, err  # names the file and the problem, never a whole huge value
    return err


def _corrupt_gzip(content: bytes) -> bytes:
    data = bytearray(gzip.compress(content * 50))
    middle = len(data) // 2
    data[middle:middle + 8] = b"\x00\xff" * 4
    return bytes(data)


# ---------------------------------------------------------------------------------------------------------------
# File contents that every reader rejects, for the gold file and the prediction file of every command.
# ---------------------------------------------------------------------------------------------------------------

def _garbage_cases(valid: bytes):
    return {
        "corrupt gzip body": (_corrupt_gzip(valid), "gzip"),
        "truncated gzip": (gzip.compress(valid * 50)[:-12], "gzip data ends early"),
        "gzip magic then garbage": (b"\x1f\x8b" + b"not really gzip at all", "gzip"),
        "empty file": (b"", "empty"),
        "binary garbage": (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe\x80\x81", "not UTF-8"),
        "byte-order mark": (b"\xef\xbb\xbf" + valid, "byte-order mark"),
        "deep nesting": (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        "integer of 5000 digits": (b"1" * 5000, "5000 digits"),
    }


GARBAGE_CASES = [(command, role, name)
                 for command in COMMANDS for role in ("data", "pred") for name in _garbage_cases(b"")]


@pytest.mark.parametrize("command, role, name", GARBAGE_CASES)
def test_unreadable_files_are_one_line_errors(capsys, tmp_path, command, role, name):
    valid = VALID_PRED[command] if role == "pred" else VALID_DATA[command]
    content, message = _garbage_cases(valid)[name]
    data = _write(tmp_path / "gold.jsonl", VALID_DATA[command])
    pred = _write(tmp_path / ("en.jsonl" if command == "eval-mkqa" else "pred.json"), VALID_PRED[command])
    bad = _write(tmp_path / f"bad_{role}.jsonl", content)
    argv = _argv(command, bad if role == "data" else data, bad if role == "pred" else pred)
    if name == "empty file" and command == "eval-mkqa" and role == "pred":
        message = "no prediction records"
    if name == "empty file" and role == "data" and command != "eval-mkqa":
        message = "no gold questions"
    _assert_rejected(capsys, argv, f"bad_{role}.jsonl", message)


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("role", ["data", "pred"])
@pytest.mark.parametrize("kind", ["name too long", "symlink loop", "directory", "device", "missing", "nul"])
def test_unopenable_paths_are_one_line_errors(capsys, tmp_path, command, role, kind):
    data = _write(tmp_path / "gold.jsonl", VALID_DATA[command])
    pred = _write(tmp_path / ("en.jsonl" if command == "eval-mkqa" else "pred.json"), VALID_PRED[command])
    if kind == "name too long":
        bad, names = str(tmp_path / ("x" * 5000)), "xxxxxxxx"
    elif kind == "symlink loop":
        os.symlink(tmp_path / "loop_b", tmp_path / "loop_a")
        os.symlink(tmp_path / "loop_a", tmp_path / "loop_b")
        bad = names = str(tmp_path / "loop_a")
    elif kind == "directory":
        bad = names = str(tmp_path)
    elif kind == "device":
        bad = names = os.devnull
    elif kind == "missing":
        bad = names = str(tmp_path / "nope.json")
    else:
        bad, names = str(tmp_path / "nul\x00name"), "nul"
    _assert_rejected(capsys, _argv(command, bad if role == "data" else data, bad if role == "pred" else pred), names)


@pytest.mark.parametrize("kind", ["name too long", "symlink loop", "nul"])
def test_mkqa_prediction_folder_paths(capsys, tmp_path, kind):
    data = _write(tmp_path / "gold.jsonl", VALID_DATA["eval-mkqa"])
    folder = tmp_path / "preds"
    folder.mkdir()
    if kind == "name too long":
        argv, names = ["eval-mkqa", "--data_file", data, "--pred_dir", str(tmp_path / ("y" * 5000))], "yyyyyy"
    elif kind == "symlink loop":  # a prediction file that loops is reported, not taken as absent
        os.symlink(folder / "loop", folder / "en.jsonl")
        os.symlink(folder / "en.jsonl", folder / "loop")
        argv, names = ["eval-mkqa", "--data_file", data, "--pred_dir", str(folder)], "en.jsonl"
    else:
        argv, names = ["eval-mkqa", "--data_file", data, "--pred_dir", str(tmp_path / "a\x00b")], str(tmp_path)
    _assert_rejected(capsys, argv, names)


# ---------------------------------------------------------------------------------------------------------------
# Well-formed JSON with the wrong content.
# ---------------------------------------------------------------------------------------------------------------

BIG = "1" + "0" * 400  # 10**400 as a JSON integer

# (command, role, file content, message fragment)
BAD_CONTENT = [
    # Top-level type.
    ("eval-xor-full", "pred", b'["q1", "x"]', "expected a JSON object"),
    ("eval-xor-full", "pred", b'"just a string"', "expected a JSON object"),
    ("eval-xor-full", "pred", b"null", "got a JSON null"),
    ("eval-xor-engspan", "pred", b"42", "got a JSON number"),
    ("eval-xor-retrieve", "pred", b'{"q1": []}', "expected a JSON array"),
    ("eval-xor-full", "data", b'["q1", "ja", ["x"]]\n', "line 1: expected a JSON object"),
    ("eval-mkqa", "pred", b'"Paris"\n', "line 1: expected an object"),
    ("eval-mkqa", "data", _jsonl(MKQA_GOLD) + b"[]\n", "line 3: expected an MKQA object"),
    # null (or another type) where a list is expected.
    ("eval-xor-full", "data", b'{"id": "q1", "lang": "ja", "answers": null}\n', "line 1: 'answers' must be"),
    ("eval-xor-engspan", "data", b'{"id": "q1", "lang": "ja", "answers": ["a", null]}\n', "element 1 is null"),
    ("eval-xor-retrieve", "pred", b'[{"id": "q1", "lang": "ja", "ctxs": null}]', "record 0 (id 'q1'): 'ctxs'"),
    ("eval-xor-retrieve", "pred", b'[{"id": "q1", "lang": "ja", "ctxs": [{"text": "t"}]}]', "element 0 is"),
    ("eval-mkqa", "data", json.dumps({**MKQA_GOLD[0], "answers": {
        "en": [{"type": "entity", "text": "Paris", "aliases": None}], "ja": []}}).encode(), "'aliases' must be"),
    ("eval-mkqa", "data", json.dumps({**MKQA_GOLD[0], "queries": None}).encode(), "'queries' must map"),
    ("eval-xor-full", "data", b'{"id": "q1", "lang": "ja", "answers": ["a"], "question": ["q"]}\n',
     "'question' must be a string"),
    # Numbers: 10**400, 1e400, NaN, Infinity, probabilities outside [0, 1], booleans and floats as ids.
    ("eval-mkqa", "pred", f'{{"example_id": 1, "prediction": "x", "no_answer_prob": {BIG}}}\n'.encode(),
     "'no_answer_prob' must be a finite number between 0 and 1"),
    ("eval-mkqa", "pred", b'{"example_id": 1, "prediction": "x", "no_answer_prob": 1e400}\n', "got inf"),
    ("eval-mkqa", "pred", b'{"example_id": 1, "prediction": "x", "no_answer_prob": NaN}\n', "got nan"),
    ("eval-mkqa", "pred", b'{"example_id": 1, "prediction": "x", "no_answer_prob": -Infinity}\n', "got -inf"),
    ("eval-mkqa", "pred", b'{"example_id": 1, "prediction": "x", "no_answer_prob": 1.5}\n', "got 1.5"),
    ("eval-mkqa", "pred", b'{"example_id": 1, "prediction": "x", "no_answer_prob": -0.25}\n', "got -0.25"),
    ("eval-mkqa", "pred", b'{"example_id": 1, "prediction": "x", "no_answer_prob": "0.5"}\n', "got '0.5'"),
    ("eval-mkqa", "pred", b'{"example_id": [1], "prediction": "x"}\n', "'example_id' must be"),
    ("eval-mkqa", "pred", b'{"example_id": 1.5, "prediction": "x"}\n', "'example_id' must be"),
    ("eval-xor-full", "pred", b'{"q1": NaN}', "record 'q1': the answer must be a string, got a JSON number"),
    ("eval-xor-full", "data", b'{"id": true, "lang": "ja", "answers": ["a"]}\n', "'id' must be a string"),
    ("eval-xor-full", "data", ('{"id": 1' + "0" * 5000 + ', "lang": "ja", "answers": ["a"]}\n').encode(),
     "line 1: an integer of 5001 digits"),
    # MKQA gold: non-string example ids, a language with answers but no query.
    *[("eval-mkqa", "data", json.dumps({**MKQA_GOLD[0], "example_id": bad}).encode(), "'example_id' must be")
      for bad in ([1], {"id": 1}, None, True, 1.5)],
    ("eval-mkqa", "data", json.dumps({**MKQA_GOLD[0], "queries": {"en": "q"}}).encode(),
     "line 1: language 'ja' has answers but no query"),
    ("eval-mkqa", "data", json.dumps({**MKQA_GOLD[0], "answers": {"en": MKQA_GOLD[0]["answers"]["en"]}}).encode(),
     "line 1: language 'ja' has a query but no answers"),
    # Lone surrogates (which MeCab and stdout cannot take), in values and keys.
    ("eval-xor-full", "pred", b'{"q1": "\\ud800", "q2": "x"}', "lone surrogate"),
    ("eval-xor-full", "pred", b'{"q1\\udfff": "x"}', "lone surrogate"),
    ("eval-xor-full", "data", b'{"id": "q1", "lang": "ja", "answers": ["\\udc00\\ud800"]}\n', "line 1: a string"),
    ("eval-xor-engspan", "pred", b'{"q1": {"answer": "\\ud83d"}}', "lone surrogate"),
    ("eval-xor-retrieve", "pred", b'[{"id": "q1", "lang": "ja", "ctxs": ["\\ud800"]}]', "lone surrogate"),
    ("eval-mkqa", "pred", b'{"example_id": 1, "prediction": "\\ud800"}\n', "line 1: a string holds a lone"),
    # A key repeated inside one record (the top-level {id: answer} object counts repeats instead).
    ("eval-xor-full", "data", b'{"id": "q1", "id": "q2", "lang": "ja", "answers": ["a"]}\n',
     "line 1: key 'id' appears twice"),
    ("eval-xor-retrieve", "pred", b'[{"id": "q1", "lang": "ja", "lang": "fi", "ctxs": []}]', "key 'lang' appears"),
    ("eval-xor-engspan", "pred", b'{"q1": {"answer": "a", "answer": "b"}}', "key 'answer' appears twice"),
    ("eval-mkqa", "pred", b'{"example_id": 1, "prediction": "x", "prediction": "y"}\n', "key 'prediction'"),
    # Invalid JSON on a later line, and a huge value in an error.
    ("eval-xor-full", "data", _jsonl(XOR_GOLD) + b'{"id": "q3", \n', "line 3: not valid JSON at column"),
    ("eval-xor-full", "data", json.dumps({"id": "q", "lang": "x" * 1_000_000, "answers": []}).encode(),
     "'answers' must be a non-empty list of strings, got an empty list"),
    ("eval-xor-full", "data", json.dumps({"id": "q", "lang": "ja", "answers": ["a"] * 10 + [["x" * 10**6]]}).encode(),
     "element 10 is a JSON array"),
]


@pytest.mark.parametrize("command, role, content, message", BAD_CONTENT)
def test_malformed_content_is_a_one_line_error(capsys, tmp_path, command, role, content, message):
    data = _write(tmp_path / "gold.jsonl", VALID_DATA[command])
    pred = _write(tmp_path / ("en.jsonl" if command == "eval-mkqa" else "pred.json"), VALID_PRED[command])
    bad = _write(tmp_path / f"bad_{role}.jsonl", content)
    argv = _argv(command, bad if role == "data" else data, bad if role == "pred" else pred)
    _assert_rejected(capsys, argv, f"bad_{role}.jsonl", message)


# ---------------------------------------------------------------------------------------------------------------
# Skipped and counted: what the official scorers skip, reported in the coverage lines and the JSON summary.
# ---------------------------------------------------------------------------------------------------------------

def _scored(capsys, argv):
    code, out, err = _run(capsys, argv)
    assert code == 0 and "Traceback" not in err, err
    return json.loads(out.splitlines()[-1]), err


@pytest.mark.parametrize("command", ["eval-xor-full", "eval-xor-engspan"])
def test_repeated_prediction_keys_are_counted(capsys, tmp_path, command):
    data = _write(tmp_path / "gold.jsonl", VALID_DATA[command])
    pred = _write(tmp_path / "pred.json", b'{"q1": "x", "q2": "Helsinki", "q1": "y", "q1": "z"}')
    summary, err = _scored(capsys, _argv(command, data, pred))
    coverage = summary.get("coverage") or summary[command.split("-", 1)[1].replace("-", "_")]["coverage"]
    assert coverage["duplicate"] == 2 and "2 duplicate prediction ids (later records): q1, q1" in err


def test_repeated_retrieval_records_and_gold_ids_are_counted(capsys, tmp_path):
    data = _write(tmp_path / "gold.jsonl", _jsonl(XOR_GOLD + XOR_GOLD[1:]))
    pred = _write(tmp_path / "pred.json", json.dumps(RETRIEVE_PRED + RETRIEVE_PRED[:1]).encode())
    summary, err = _scored(capsys, _argv("eval-xor-retrieve", data, pred))
    assert summary["coverage"]["duplicate"] == 1 and summary["coverage"]["duplicate_gold"] == 1
    assert "1 duplicate prediction ids" in err and "1 duplicate gold ids: q2" in err


@pytest.mark.parametrize("command", COMMANDS)
def test_unknown_ids_are_an_error_or_skipped_and_counted(capsys, tmp_path, command):
    data = _write(tmp_path / "gold.jsonl", VALID_DATA[command])
    content = {"eval-xor-full": b'{"q1": "x", "zz": "y"}', "eval-xor-engspan": b'{"q1": "x", "zz": "y"}',
               "eval-xor-retrieve": json.dumps(RETRIEVE_PRED + [{"id": "zz", "lang": "fi", "ctxs": []}]).encode(),
               "eval-mkqa": _jsonl(MKQA_PRED + [{"example_id": 99, "prediction": "x"}])}[command]
    pred = _write(tmp_path / ("en.jsonl" if command == "eval-mkqa" else "pred.json"), content)
    _assert_rejected(capsys, _argv(command, data, pred), pred[-9:], "is not in")
    summary, err = _scored(capsys, _argv(command, data, pred, "--allow_unknown_ids"))
    assert "1 unknown prediction ids (ignored)" in err
    assert '"unknown": 1' in json.dumps(summary)


def test_mkqa_repeated_ids_missing_predictions_and_dropped_questions_are_counted(capsys, tmp_path):
    unanswerable = {**_mkqa_record(3, "x"), "answers": {lang: [{"type": "unanswerable", "text": None}]
                                                         for lang in ("en", "ja")}}
    data = _write(tmp_path / "gold.jsonl", _jsonl(MKQA_GOLD + [unanswerable, _mkqa_record(4, "Oslo")]))
    folder = tmp_path / "preds"
    folder.mkdir()
    _write(folder / "en.jsonl", _jsonl(MKQA_PRED + MKQA_PRED[:1] + [{"example_id": 3, "prediction": ""}]))
    summary, err = _scored(capsys, ["eval-mkqa", "--data_file", data, "--pred_dir", str(folder),
                                    "--languages", "en"])
    assert summary["cora"]["coverage"]["duplicate"] == 1 and summary["cora"]["coverage"]["missing"] == 1
    assert summary["cora"]["coverage"]["predictions_for_dropped_questions"] == 1
    assert "1 duplicate prediction ids (later records): en:1" in err and "1 missing predictions: en:4" in err
    assert "conversion: 1 (question, language) pairs without answer text dropped" in err


# ---------------------------------------------------------------------------------------------------------------
# Long answers through MeCab: no crash, no hang, and normal-length text split exactly as before.
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("answer", ["あ" * 1_000_000, "a" * 200_000, "東京 都 " * 40_000])
def test_million_character_japanese_answer_is_scored(capsys, tmp_path, answer):
    data = _write(tmp_path / "gold.jsonl", VALID_DATA["eval-xor-full"])
    pred = _write(tmp_path / "pred.json", json.dumps({"q1": answer, "q2": "Helsinki"}).encode())
    start = time.monotonic()
    summary, _ = _scored(capsys, _argv("eval-xor-full", data, pred))
    assert time.monotonic() - start < 60
    assert summary["per_language"]["ja"]["em"] == 0.0 and summary["per_language"]["fi"]["em"] == 100.0


def test_mecab_pieces_leave_normal_text_unchanged(xor_full_dev):
    import MeCab  # pylint: disable=import-outside-toplevel
    tagger = MeCab.Tagger("-Owakati")
    answers = [a for q in xor_full_dev if q.lang == "ja" for a in q.answers]
    assert max(len(a) for a in answers) < text.MECAB_MAX_CHARACTERS
    assert all(text.mecab_wakati(a) == tagger.parse(a) for a in answers)
    # A long text cut at spaces: the same words as MeCab gives for the whole.
    long_text = " ".join(a for a in answers * 4 if a.strip())
    assert len(long_text) > 5 * text.MECAB_MAX_CHARACTERS
    assert text.mecab_wakati(long_text) == tagger.parse(long_text)
