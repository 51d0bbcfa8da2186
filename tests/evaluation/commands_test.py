"""The `class-jax eval-*` commands: official figures, the final JSON line, coverage, and one-line errors."""

import json

import pytest

from class_jax import cli


def _run(capsys, *argv):
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _write_jsonl(path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return str(path)


@pytest.fixture
def small_full_gold(tmp_path):
    return _write_jsonl(tmp_path / "gold.jsonl", [
        {"id": "q1", "lang": "fi", "answers": ["Helsinki"]},
        {"id": "q2", "lang": "fi", "answers": ["Suomen tasavalta", "Suomi"]},
        {"id": "q3", "lang": "fi", "answers": ["1917"]},
    ])


def test_eval_xor_full_prints_official_lines_coverage_and_json(capsys, tmp_path, small_full_gold):
    # Same values as the hand case in xor_full_test: fi F1 (1 + 2/3) / 3, divided by 7 officially.
    pred = tmp_path / "pred.json"
    pred.write_text('{"q1": "Helsinki", "q2": "tasavalta", "q2": "tasavalta"}', encoding="utf-8")
    code, out, err = _run(capsys, "eval-xor-full", "--data_file", small_full_gold, "--pred_file", str(pred))
    assert code == 0
    lines = out.splitlines()
    assert "Evaluating the performance on fi" in lines and "Evaluating the performance on sw" in lines
    summary = json.loads(lines[-1])
    assert summary["f1"] == pytest.approx((1 + 2 / 3) / 3 / 7 * 100)
    assert f"avg f1: {summary['f1']}" in lines
    assert summary["coverage"]["missing"] == 1 and summary["coverage"]["duplicate"] == 1
    assert "1 missing predictions: q3" in err and "1 duplicate prediction ids" in err


@pytest.mark.parametrize("content, message", [
    ('["not", "an", "object"]', "pred.json: expected a JSON object {question id: answer}, got a JSON array"),
    ('{"q1": ["Helsinki"]}', "pred.json: record 'q1': the answer must be a string, got a JSON array"),
    ('{"q1": "Helsinki", "zz": "x"}', "pred.json: record 'zz': id is not in"),
    ('{"q1": "Helsinki",', "pred.json: not valid JSON at line 1"),
])
def test_eval_xor_full_bad_prediction_file_is_one_line_error(capsys, tmp_path, small_full_gold, content, message):
    pred = tmp_path / "pred.json"
    pred.write_text(content, encoding="utf-8")
    code, out, err = _run(capsys, "eval-xor-full", "--data_file", small_full_gold, "--pred_file", str(pred))
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err


def test_eval_xor_full_unknown_gold_language_is_one_line_error(capsys, tmp_path):
    gold = _write_jsonl(tmp_path / "gold.jsonl", [{"id": "q1", "lang": "fi", "answers": ["x"]},
                                                  {"id": "q2", "lang": "zz", "answers": ["x"]}])
    pred = tmp_path / "pred.json"
    pred.write_text("{}", encoding="utf-8")
    code, _, err = _run(capsys, "eval-xor-full", "--data_file", gold, "--pred_file", str(pred))
    assert code == 2 and "gold.jsonl: line 2 (id 'q2'): language 'zz'" in err


def test_eval_xor_retrieve(capsys, tmp_path):
    gold = _write_jsonl(tmp_path / "gold.jsonl", [{"id": "q1", "lang": "te", "answers": ["Portland"]},
                                                  {"id": "q2", "lang": "te", "answers": ["Salem"]}])
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps([{"id": "q1", "lang": "te", "ctxs": ["Portland is in Oregon."]}]), encoding="utf-8")
    code, out, err = _run(capsys, "eval-xor-retrieve", "--data_file", gold, "--pred_file", str(pred))
    assert code == 0
    lines = out.splitlines()
    # Official: only the predicted question counts (1/1 hit); corrected: 1 of the 2 gold questions.
    assert lines[:5] == ["Evaluating R@2kt", "performance on te (1 examples)", "100.0",
                         "Final macro averaged score: ", "100.0"]
    summary = json.loads(lines[-1])
    assert (summary["R@5kt"], summary["corrected_R@2kt"]) == (100.0, 50.0)
    assert "1 missing predictions: q2" in err


def test_eval_xor_retrieve_wrong_shape(capsys, tmp_path):
    gold = _write_jsonl(tmp_path / "gold.jsonl", [{"id": "q1", "lang": "te", "answers": ["Portland"]}])
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps([{"id": "q1", "lang": "te", "ctxs": [{"text": "Portland"}]}]), encoding="utf-8")
    code, _, err = _run(capsys, "eval-xor-retrieve", "--data_file", gold, "--pred_file", str(pred))
    assert code == 2 and "pred.json: record 0 (id 'q1'): 'ctxs' must be a list of passage texts" in err


def test_eval_xor_engspan_accepts_answer_objects(capsys, tmp_path):
    gold = _write_jsonl(tmp_path / "gold.jsonl", [{"id": "q1", "lang": "ja", "answers": ["the Eiffel Tower"]}])
    pred = tmp_path / "pred.json"
    pred.write_text('{"q1": {"answer": "Eiffel Tower"}}', encoding="utf-8")
    code, out, _ = _run(capsys, "eval-xor-engspan", "--data_file", gold, "--pred_file", str(pred))
    assert code == 0 and "F1: 100.0, EM:100.0" in out and json.loads(out.splitlines()[-1])["em"] == 100.0


def test_eval_mkqa_both_metrics_on_real_records(capsys, tmp_path, shared_dir):
    data = shared_dir / "data" / "mkqa" / "test_mkqa_6examples.jsonl.gz"
    pred_dir = tmp_path / "preds"
    pred_dir.mkdir()
    # Apple's format for en (No Answer with probability 1 for the unanswerable ones), CORA's dict for zh_cn.
    _write_jsonl(pred_dir / "en.jsonl", [
        {"example_id": 7631360939705650347, "prediction": "Ridley Scott", "binary_answer": None,
         "no_answer_prob": 0.0},
        {"example_id": 2961317153244610375, "prediction": "", "binary_answer": None, "no_answer_prob": 1.0},
    ])
    (pred_dir / "zh_cn.json").write_text(json.dumps({"7631360939705650347": "雷德利·斯科特"}, ensure_ascii=False),
                                         encoding="utf-8")
    code, out, err = _run(capsys, "eval-mkqa", "--data_file", str(data), "--pred_dir", str(pred_dir),
                          "--languages", "en", "zh_cn")
    assert code == 0
    summary = json.loads(out.splitlines()[-1])
    # CORA: Apple's 6 records hold 3 with answer text (Ridley Scott, Hafthor Bjornsson, the 2017 dates); the
    # long_answer and 2 unanswerable ones are dropped. Only Ridley Scott is answered, exactly, in each language:
    # 1/3 per language, 33.33 on average.
    assert summary["cora"]["per_language"]["en"]["count"] == 3
    assert summary["cora"]["f1"] == pytest.approx(100 / 3)
    # Apple: all 6 count. Start "abstain on all" = 3 unanswerable right; Ridley Scott (prob 0) +1 -> 4; every other
    # prediction is No Answer (missing ones included), adding 0 -> best F1 4/6 = 66.67 in both languages.
    assert set(summary["apple"]["per_language"]) == {"en", "zh_cn"}
    assert summary["apple"]["best_f1"] == 66.67
    assert "Macro Average" in out and "predictions for dropped questions" in err


def test_eval_mkqa_apple_needs_original_records(capsys, tmp_path):
    gold = _write_jsonl(tmp_path / "mkqa-sv.jsonl", [{"id": "1_sv", "lang": "sv", "answers": ["x"]}])
    (tmp_path / "sv.json").write_text('{"1_sv": "x"}', encoding="utf-8")
    code, _, err = _run(capsys, "eval-mkqa", "--data_file", gold, "--pred_file", str(tmp_path / "sv.json"),
                        "--language", "sv", "--metric", "apple")
    assert code == 2 and "use --metric cora" in err
    code, out, _ = _run(capsys, "eval-mkqa", "--data_file", gold, "--pred_file", str(tmp_path / "sv.json"),
                        "--language", "sv")
    assert code == 0 and json.loads(out.splitlines()[-1])["cora"]["f1"] == 100.0


def test_eval_mkqa_bad_prediction_record(capsys, tmp_path, shared_dir):
    data = shared_dir / "data" / "mkqa" / "hf_dummy_mkqa_5examples.jsonl"
    pred = _write_jsonl(tmp_path / "en.jsonl", [{"example_id": 1, "prediction": "x", "binary_answer": "maybe"}])
    code, _, err = _run(capsys, "eval-mkqa", "--data_file", str(data), "--pred_file", pred, "--language", "en")
    assert code == 2 and "en.jsonl: line 1: 'binary_answer' must be" in err
