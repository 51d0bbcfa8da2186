"""XOR-EnglishSpan F1 / EM: the real dev set and small cases computed by hand."""

import pytest

from class_jax.runtime.errors import UserError
from class_jax.evaluation import xor_engspan
from class_jax.evaluation.records import GoldQuestion


def _q(qid, lang, *answers):
    return GoldQuestion(id=qid, lang=lang, answers=tuple(answers))


def test_small_set_by_hand():
    gold = [_q("q1", "ar", "the Eiffel Tower"), _q("q2", "ar", "Paris", "the city of Paris"),
            _q("q3", "ja", "y", "y z w v"), _q("q4", "ja", "Tokyo")]
    predictions = {
        "q1": "Eiffel tower",  # both normalise to "eiffel tower": F1 1, EM 1
        "q2": "city of Paris",  # = "city of paris" after article removal: F1 1, EM 1
        # q3 "y z": vs "y" P 1/2 R 1 F1 2/3; vs "y z w v" P 1 R 1/2 F1 2/3 -> F1 2/3, EM 0; precision and recall
        #    are maximised separately (1 from the second answer, 1 from the first) although F1 is only 2/3.
        "q3": "y z",
    }  # q4 missing: 0
    report = xor_engspan.score_xor_engspan(gold, predictions)
    assert (report.per_language["ar"].f1, report.per_language["ar"].em) == (100.0, 100.0)
    ja = report.per_language["ja"]
    assert ja.f1 == pytest.approx(2 / 3 / 2 * 100) and ja.em == 0
    assert ja.precision == pytest.approx(50.0) and ja.recall == pytest.approx(50.0)  # (1 + 0) / 2 each
    # Average over the two languages with questions: F1 (100 + 33.33) / 2, EM (100 + 0) / 2.
    assert report.f1 == pytest.approx((100 + 100 / 3) / 2) and report.em == pytest.approx(50.0)
    assert report.coverage.missing_ids == ("q4",)


def test_answer_that_normalises_to_nothing_gets_em_but_no_f1():
    # "The" -> "" on both sides: equal strings (EM 1) but no shared token (F1 0), as officially.
    report = xor_engspan.score_xor_engspan([_q("q", "te", "The")], {"q": "the"})
    assert (report.f1, report.em) == (0.0, 100.0)


def test_dev_oracle(xor_retrieve_dev):
    report = xor_engspan.score_xor_engspan(xor_retrieve_dev, {q.id: q.answers[0] for q in xor_retrieve_dev})
    assert report.em == 100.0
    # Telugu has gold answers that normalise to nothing (see the test above), so its F1 stays below 100.
    assert report.per_language["te"].f1 < 100 and report.per_language["ar"].f1 == 100


def test_empty_predictions_and_unknown_inputs():
    gold = [_q("q1", "fi", "x")]
    assert xor_engspan.score_xor_engspan(gold, {}).f1 == 0.0
    with pytest.raises(UserError, match="record 'nope'"):
        xor_engspan.score_xor_engspan(gold, {"nope": "x"})
    with pytest.raises(UserError, match="language 'sw' is not one of"):
        xor_engspan.score_xor_engspan([_q("q1", "sw", "x")], {})
