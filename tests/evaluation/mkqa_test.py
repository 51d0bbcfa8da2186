"""MKQA data and the CLASS / CORA way of scoring it, on the real MKQA records and small hand cases."""

import pytest

from class_jax.runtime.errors import UserError
from class_jax.evaluation import files, mkqa
from class_jax.evaluation.records import GoldQuestion


@pytest.fixture(scope="module")
def mkqa_records(shared_dir):
    """The 11 real MKQA records (5 from the HF dummy file, 6 from Apple's test file)."""
    folder = shared_dir / "data" / "mkqa"
    return (mkqa.load_mkqa_records(folder / "hf_dummy_mkqa_5examples.jsonl")
            + mkqa.load_mkqa_records(folder / "test_mkqa_6examples.jsonl.gz"))


def test_real_records_load_with_all_26_languages(mkqa_records):
    assert len(mkqa_records) == 11
    assert all(set(r.queries) == set(mkqa.MKQA_LANGUAGES) for r in mkqa_records)
    assert all(isinstance(r.example_id, str) for r in mkqa_records)


def test_conversion_keeps_text_and_aliases_and_drops_answerless(mkqa_records):
    converted = mkqa.convert_to_xor(mkqa_records)
    # 2 long_answer + 2 unanswerable records have no answer text in any language: 7 of 11 kept per language.
    assert converted.dropped_without_answer == {lang: converted.dropped_without_answer["en"]
                                                for lang in mkqa.MKQA_LANGUAGES}
    assert len(converted.dropped_without_answer["en"]) == 4
    assert len(converted.questions) == 7 * 26
    by_key = {(q.lang, q.id): q for q in converted.questions}
    # Two date answers: text "2017" + alias "2017", then text "2017-05-18" + its 11 aliases = 14 strings.
    dates = by_key[("en", "36228854473990432")].answers
    assert len(dates) == 14 and dates[:4] == ("2017", "2017", "2017-05-18", "2017-05-18")
    assert by_key[("ja", "-4766029169354683727")].answers[0] == "クリス・ヤング"


def test_converted_records_score_with_the_cora_rule(mkqa_records):
    questions = mkqa.convert_to_xor(mkqa_records).questions
    oracle = {}
    for q in questions:
        oracle.setdefault(q.lang, {})[q.id] = q.answers[0]
    report = mkqa.score_mkqa_cora(questions, oracle)
    assert len(report.per_language) == 26 and report.per_language["en"].f1 == 100
    # Japanese: the 3 answers with "・" miss EM (prediction-only rewrite); the other 4 match -> 4/7.
    assert report.per_language["ja"].em == pytest.approx(4 / 7 * 100)
    # Macro over 26 languages: 25 at 100 and ja at 400/7.
    assert report.em == pytest.approx((25 * 100 + 400 / 7) / 26)
    assert report.corrected_em == pytest.approx(100.0)


def test_cora_rule_splits_chinese_on_whitespace_only():
    gold = [GoldQuestion("z", "zh_cn", ("克里斯·扬",))]
    # One whitespace token on each side and they differ: F1 0 (Apple's character F1 would give 0.75).
    report = mkqa.score_mkqa_cora(gold, {"zh_cn": {"z": "克里斯"}})
    assert report.f1 == 0.0


def test_cora_rule_skips_no_answer_gold_and_averages_over_present_languages():
    gold = [GoldQuestion("a", "sv", ("No Answer",)), GoldQuestion("b", "sv", ("Stockholm",)),
            GoldQuestion("c", "tr", ("Ankara",))]
    report = mkqa.score_mkqa_cora(gold, {"sv": {"b": "Stockholm"}})
    # sv: only b counts (100); tr: c has no prediction (0) -> (100 + 0) / 2 = 50.
    assert report.per_language["sv"].count == 1
    assert report.f1 == pytest.approx(50.0)
    assert report.coverage.notes["no_answer_gold_skipped"] == 1
    assert report.coverage.missing_ids == ("tr:c",)


def test_mia_xor_format_files_score(shared_dir):
    folder = shared_dir / "data" / "mkqa" / "mia2022_dev"
    gold = files.load_gold_questions(folder / "mkqa-en.jsonl") + files.load_gold_questions(folder / "mkqa-zh_cn.jsonl")
    assert len(gold) == 2 * 1758
    oracle = {}
    for q in gold:
        oracle.setdefault(q.lang, {})[q.id] = q.answers[0]
    report = mkqa.score_mkqa_cora(gold, oracle)
    assert (report.f1, report.em) == (100.0, 100.0)


def test_predictions_for_another_language_or_id_are_errors():
    gold = [GoldQuestion("b", "sv", ("Stockholm",))]
    with pytest.raises(UserError, match="language 'da' has predictions but no questions"):
        mkqa.score_mkqa_cora(gold, {"da": {"b": "x"}})
    with pytest.raises(UserError, match="record 'zz'"):
        mkqa.score_mkqa_cora(gold, {"sv": {"zz": "x"}})


def test_malformed_mkqa_record_is_an_error():
    with pytest.raises(UserError, match="f.jsonl: line 3: missing field 'answers'"):
        mkqa.mkqa_record_from_json({"example_id": 1, "queries": {}}, "f.jsonl: line 3")
    with pytest.raises(UserError, match="unknown MKQA language 'xx'"):
        mkqa.mkqa_record_from_json({"example_id": 1, "queries": {"xx": "q"}, "answers": {"xx": []}}, "f")
