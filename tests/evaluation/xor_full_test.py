"""XOR-Full F1 / EM / BLEU: the real dev set, and small cases whose values follow by hand from the official rules."""

import collections
import random

import pytest

from class_jax.runtime.errors import UserError
from class_jax.evaluation import xor_full
from class_jax.evaluation.records import AnswerPredictions, GoldQuestion


def _q(qid, lang, *answers):
    return GoldQuestion(id=qid, lang=lang, answers=tuple(answers))


def test_dev_file_has_the_published_language_counts(xor_full_dev):
    counts = collections.Counter(q.lang for q in xor_full_dev)
    assert counts == {"ar": 708, "bn": 427, "fi": 615, "ja": 433, "ko": 371, "ru": 568, "te": 351}


def test_oracle_predictions_score_the_published_ceiling(xor_full_dev):
    # Oracle = first gold answer. Numbers from the official script (README): F1 99.36, EM 97.33, BLEU 75.18.
    report = xor_full.score_xor_full(xor_full_dev, {q.id: q.answers[0] for q in xor_full_dev})
    assert (round(report.f1, 2), round(report.em, 2), round(report.bleu, 2)) == (99.36, 97.33, 75.18)
    # Only Japanese loses F1 / EM (the "・" rewrite applies to the prediction only).
    assert {lang for lang, s in report.per_language.items() if s.f1 < 100} == {"ja"}
    # Corrected: a copy of the gold answer is an exact match everywhere once both sides are rewritten alike.
    assert (report.corrected_f1, report.corrected_em) == (pytest.approx(100.0), pytest.approx(100.0))
    assert report.corrected_bleu > report.bleu
    assert report.coverage.matched == 3473 and not report.coverage.missing_ids


def test_empty_prediction_set_scores_zero_and_reports_every_question_missing(xor_full_dev):
    report = xor_full.score_xor_full(xor_full_dev, {})
    # Every question counts and scores 0: 0 / 7 = 0 for all three.
    assert (report.f1, report.em, report.bleu) == (0.0, 0.0, 0.0)
    assert (report.corrected_f1, report.corrected_em) == (0.0, 0.0)
    assert len(report.coverage.missing_ids) == 3473 and report.coverage.matched == 0


def test_partial_predictions_count_missing_questions_as_zero(xor_full_dev):
    # Oracle answers for Arabic only: ar scores 100, the six others 0 -> (100 + 6 * 0) / 7 = 14.2857...
    report = xor_full.score_xor_full(xor_full_dev, {q.id: q.answers[0] for q in xor_full_dev if q.lang == "ar"})
    assert report.f1 == pytest.approx(100 / 7) and report.em == pytest.approx(100 / 7)
    assert report.per_language["ar"].f1 == 100 and report.per_language["fi"].f1 == 0
    assert len(report.coverage.missing_ids) == 3473 - 708


def test_prediction_order_does_not_matter(xor_full_dev):
    pairs = [(q.id, q.answers[0]) for q in xor_full_dev[::7]]
    shuffled = pairs[:]
    random.Random(0).shuffle(shuffled)
    assert (xor_full.score_xor_full(xor_full_dev, dict(pairs)).to_dict()
            == xor_full.score_xor_full(xor_full_dev, dict(shuffled)).to_dict())


def test_small_finnish_set_by_hand():
    gold = [_q("q1", "fi", "Helsinki"), _q("q2", "fi", "Suomen tasavalta", "Suomi"), _q("q3", "fi", "1917")]
    # q1 exact: F1 1, EM 1, character BLEU 1 (identical 8-character strings).
    # q2 "tasavalta": vs "suomen tasavalta" P 1, R 1/2 -> F1 2/3; vs "suomi" 0; EM 0. BLEU: every character
    #    n-gram of "tasavalta" is in "Suomen tasavalta"; the closest reference length is 5 (|5-9| < |16-9|), shorter
    #    than the hypothesis, so no brevity penalty: BLEU 1.
    # q3 has no prediction: 0.
    report = xor_full.score_xor_full(gold, {"q1": "Helsinki", "q2": "tasavalta"})
    fi = report.per_language["fi"]
    assert fi.count == 3
    assert fi.f1 == pytest.approx((1 + 2 / 3) / 3 * 100)
    assert fi.em == pytest.approx(1 / 3 * 100)
    assert fi.bleu == pytest.approx(2 / 3 * 100)
    # Official average: one language's score divided by 7 (quirk); corrected: by the 1 language present.
    assert report.f1 == pytest.approx((1 + 2 / 3) / 3 / 7 * 100)
    assert report.em == pytest.approx(1 / 3 / 7 * 100)
    assert report.bleu == pytest.approx(2 / 3 / 7 * 100)
    assert report.corrected_f1 == pytest.approx((1 + 2 / 3) / 3 * 100)
    assert report.coverage.missing_ids == ("q3",)


def test_answers_shuffled_between_questions_score_nothing():
    gold = [_q("a", "fi", "Helsinki"), _q("b", "fi", "Tampere")]
    report = xor_full.score_xor_full(gold, {"a": "Tampere", "b": "Helsinki"})
    # No shared token; no shared character bigram, so BLEU is ~0 (NLTK without smoothing).
    assert report.per_language["fi"].f1 == 0 and report.per_language["fi"].em == 0
    assert report.per_language["fi"].bleu == pytest.approx(0, abs=1e-6)


def test_prediction_ids_are_cut_at_the_last_underscore():
    gold = [_q("q1", "ru", "Москва")]
    # "ru_q1" answers q1; "q1" and "other_q1" collapse to one key and the later value wins.
    report = xor_full.score_xor_full(gold, {"q1": "wrong", "other_q1": "Москва"})
    assert report.per_language["ru"].em == 100
    assert report.coverage.duplicate_ids == ("q1",)


def test_japanese_quirks_by_hand():
    gold = [_q("k1", "ja", "クリス・ヤング"), _q("k2", "ja", "1990年"), _q("k3", "ja", "東京、大阪")]
    # k1: gold MeCab "クリス ・ ヤング" = 3 tokens; prediction rewritten "クリス ヤング" = 2 tokens, both shared:
    #     P 1, R 2/3 -> F1 0.8, EM 0. BLEU: references are MeCab's "クリス ・ ヤング \n", which shares no
    #     character 4-gram with "クリス・ヤング" -> ~0.
    # k2: gold "1990 年" -> 年 deleted -> "1990" = prediction: F1 1, EM 1.
    # k3: prediction "東京、大阪" -> "東京,大阪" -> MeCab "東京 , 大阪" -> comma deleted -> [東京, 大阪];
    #     gold "東京 、 大阪" keeps "、": P 1, R 2/3 -> F1 0.8, EM 0.
    report = xor_full.score_xor_full(gold, {"k1": "クリス・ヤング", "k2": "1990", "k3": "東京、大阪"})
    ja = report.per_language["ja"]
    assert ja.f1 == pytest.approx((0.8 + 1 + 0.8) / 3 * 100)
    assert ja.em == pytest.approx(1 / 3 * 100)
    scores = xor_full.official_answer_scores("クリス・ヤング", ["クリス・ヤング"], "ja")
    assert scores.bleu == pytest.approx(0, abs=1e-6)
    # Corrected: the gold gets the same rewrite, so k1 and k3 become exact; BLEU compares raw strings.
    corrected = xor_full.corrected_answer_scores("クリス・ヤング", ["クリス・ヤング"], "ja")
    assert (corrected.f1, corrected.em, corrected.bleu) == (1.0, 1.0, pytest.approx(1.0))
    assert report.corrected_per_language["ja"].em == pytest.approx(100.0)


def test_short_answers_get_no_bleu_without_smoothing():
    # Three characters have no 4-gram: NLTK's unsmoothed BLEU is ~1e-77 even for an exact copy.
    assert xor_full.character_bleu(["abc"], "abc") == pytest.approx(0, abs=1e-70)
    assert xor_full.character_bleu(["abcd"], "abcd") == pytest.approx(1.0)


def test_duplicates_reported_from_the_loaded_file():
    gold = [_q("q1", "fi", "x")]
    predictions = AnswerPredictions(answers={"q1": "x"}, duplicate_ids=("q1",), source="p.json")
    report = xor_full.score_xor_full(gold, predictions)
    assert report.coverage.duplicate_ids == ("q1",) and report.coverage.prediction_records == 2


def test_unknown_prediction_id_is_an_error_naming_the_record():
    gold = [_q("q1", "fi", "x")]
    with pytest.raises(UserError, match=r"p\.json: record 'zz': id is not in gold\.jsonl"):
        xor_full.score_xor_full(gold, AnswerPredictions({"zz": "x"}, source="p.json"), gold_source="gold.jsonl")
    report = xor_full.score_xor_full(gold, {"zz": "x"}, allow_unknown_ids=True)
    assert report.coverage.unknown_ids == ("zz",) and report.coverage.missing_ids == ("q1",)


def test_language_outside_the_official_table_is_an_error():
    with pytest.raises(UserError, match=r"gold\.jsonl: line 4 \(id 'q1'\): language 'es'"):
        xor_full.score_xor_full([GoldQuestion("q1", "es", ("x",), line=4)], {}, gold_source="gold.jsonl")
