"""Reading gold and prediction files: shapes accepted, errors that name the file and record, nothing dropped."""

import collections
import gzip
import json

import pytest

from class_jax.runtime.errors import UserError
from class_jax.evaluation import files


def test_train_file_language_codes_are_stripped(xor_dir):
    # README: 2,574 rows of the train file carry lang " ar" (leading space).
    raw = collections.Counter(json.loads(line)["lang"] for line in open(xor_dir / "xor_train_retrieve_eng_span.jsonl",
                                                                        encoding="utf-8"))
    assert raw[" ar"] == 2574
    questions = files.load_gold_questions(xor_dir / "xor_train_retrieve_eng_span.jsonl")
    counts = collections.Counter(q.lang for q in questions)
    assert len(questions) == 15250 and " ar" not in counts and counts["ar"] == raw["ar"] + raw[" ar"]


@pytest.mark.parametrize("line, message", [
    ('{"id": "q", "lang": "fi"}', "g.jsonl: line 2: missing field 'answers'"),
    ('{"id": "q", "lang": "fi", "answers": []}', "g.jsonl: line 2: 'answers' must be a non-empty list"),
    ('{"id": "q", "lang": "fi", "answers": [1]}', "g.jsonl: line 2: 'answers' must be a non-empty list"),
    ('{"id": ["q"], "lang": "fi", "answers": ["a"]}', "g.jsonl: line 2: 'id' must be a string"),
    ('[1, 2]', "g.jsonl: line 2: expected a JSON object"),
    ('{"id": "q", ', "g.jsonl: line 2: not valid JSON"),
])
def test_bad_gold_record_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "g.jsonl"
    path.write_text('{"id": "ok", "lang": "fi", "answers": ["a"]}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace("[", r"\[")):
        files.load_gold_questions(path)


def test_missing_file_and_empty_file(tmp_path):
    with pytest.raises(UserError, match="nope.jsonl: no such file"):
        files.load_gold_questions(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(UserError, match="empty.jsonl: no gold questions"):
        files.load_gold_questions(tmp_path / "empty.jsonl")


def test_gzip_is_recognised_by_content(tmp_path):
    path = tmp_path / "gold.data"  # no .gz suffix
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write('{"id": 5, "lang": "fi", "answers": "single"}\n')
    (question,) = files.load_gold_questions(path)
    # Integer ids become strings; a bare string answer is wrapped, as the official XOR-Full scorer does.
    assert (question.id, question.answers, question.line) == ("5", ("single",), 1)


def test_repeated_prediction_keys_are_counted_and_the_last_kept(tmp_path):
    path = tmp_path / "p.json"
    path.write_text('{"a": "1", "b": "2", "a": "3", "a": "4"}', encoding="utf-8")
    predictions = files.load_answer_predictions(path)
    assert predictions.answers == {"a": "4", "b": "2"}
    assert predictions.duplicate_ids == ("a", "a") and predictions.records == 4


def test_answer_objects_only_where_the_official_scorer_takes_them(tmp_path):
    path = tmp_path / "p.json"
    path.write_text('{"a": {"answer": "x"}}', encoding="utf-8")
    assert files.load_answer_predictions(path, allow_answer_objects=True).answers == {"a": "x"}
    with pytest.raises(UserError, match="record 'a': the answer must be a string, got a JSON object"):
        files.load_answer_predictions(path)


def test_retrieval_predictions_shape(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"id": "q"}), encoding="utf-8")
    with pytest.raises(UserError, match="r.json: expected a JSON array"):
        files.load_retrieval_predictions(path)
    path.write_text(json.dumps([{"id": "q", "lang": "te"}]), encoding="utf-8")
    with pytest.raises(UserError, match="r.json: record 0: missing field 'ctxs'"):
        files.load_retrieval_predictions(path)
    path.write_text(json.dumps([{"id": "q", "lang": "te", "ctxs": ["p1", "p2"]}]), encoding="utf-8")
    (record,) = files.load_retrieval_predictions(path)
    assert record.passages == ("p1", "p2")


def test_mkqa_prediction_files(tmp_path):
    path = tmp_path / "en.jsonl"
    path.write_text('{"example_id": 1, "prediction": null, "binary_answer": "YES"}\n'
                    '{"example_id": "2", "prediction": "x", "no_answer_prob": 0.5}\n'
                    '{"example_id": 1, "prediction": "again"}\n', encoding="utf-8")
    predictions, duplicates = files.load_mkqa_predictions(path)
    assert list(predictions) == ["1", "2"] and duplicates == ("1",)
    assert predictions["1"].prediction == "again" and predictions["2"].no_answer_prob == 0.5
    path.write_text('{"example_id": 1, "prediction": "x", "no_answer_prob": NaN}\n', encoding="utf-8")
    with pytest.raises(UserError, match="en.jsonl: line 1: 'no_answer_prob' must be a finite number"):
        files.load_mkqa_predictions(path)
    cora = tmp_path / "en.json"
    cora.write_text('{"1": "Paris"}', encoding="utf-8")
    predictions, _ = files.load_mkqa_predictions(cora)
    assert predictions["1"].answer_text == "Paris" and predictions["1"].no_answer_prob == 0.0
