"""Apple's official MKQA metric: hand-checked cases for normalisation, F1 and the no-answer threshold."""

import pytest

from class_jax.runtime.errors import UserError
from class_jax.evaluation import mkqa, mkqa_apple
from class_jax.evaluation.records import MkqaPrediction


def _annotations(*gold):
    """gold: (id, answers) pairs -> annotations."""
    return {qid: mkqa_apple.AppleAnnotation(example_id=qid, answers=tuple(answers)) for qid, answers in gold}


def _prediction(qid, text, prob=0.0, binary=None):
    return MkqaPrediction(example_id=qid, prediction=text, binary_answer=binary, no_answer_prob=prob)


@pytest.mark.parametrize("lang, prediction, gold, f1, em", [
    # Every character is a token: 東 京 vs 東 京 都 -> P 1, R 2/3 -> F1 0.8.
    ("ja", "東京", "東京都", 0.8, 0.0),
    # Latin letters too: t o k i o vs t o k y o share t, o, k, o -> P = R = 4/5 -> F1 0.8.
    ("ja", "Tokio", "Tokyo", 0.8, 0.0),
    # Spaces are not tokens: both normalise to "東 京".
    ("ja", "東 京", "東京", 1.0, 1.0),
    # Middle dot "·" is not ASCII punctuation, so it is a token: 3 of 5 characters -> P 1, R 3/5 -> F1 0.75.
    ("zh_cn", "克里斯", "克里斯·扬", 0.75, 0.0),
    # Thai code points, vowel marks included: 4 of 7 -> P 1, R 4/7 -> F1 8/11.
    ("th", "กรุง", "กรุงเทพ", 8 / 11, 0.0),
    # English article and punctuation removal.
    ("en", "Beatles!", "The Beatles", 1.0, 1.0),
    # Arabic: every "ال" is deleted, even inside a word ("مال" -> "م").
    ("ar", "م", "مال", 1.0, 1.0),
    # French: no closing word boundary, so "lemon" loses its "le".
    ("fr", "mon", "lemon", 1.0, 1.0),
    # No Answer on either side: F1 1 only when both are No Answer.
    ("en", "", "", 1.0, 1.0), ("en", "", "Paris", 0.0, 0.0), ("en", "Paris", "", 0.0, 0.0),
])
def test_apple_f1_and_em(lang, prediction, gold, f1, em):
    assert mkqa_apple.apple_f1(prediction, gold, lang) == pytest.approx(f1)
    assert mkqa_apple.apple_exact_match(prediction, gold, lang) == em


def test_best_threshold_by_hand():
    annotations = _annotations(("a1", ["Ridley Scott"]), ("a2", ["Paris"]), ("u1", [""]), ("u2", [""]))
    predictions = [_prediction("a1", "Ridley Scott", 0.1), _prediction("a2", "London", 0.9),
                   _prediction("u1", "something", 0.8), _prediction("u2", "", 0.2)]
    result = mkqa_apple.score_apple_language(annotations, predictions, "en")
    # Start: abstain on all = 2 unanswerable right, score 2. By probability: a1 (0.1) +1 -> 3 (best, threshold 0.1);
    # u2 (0.2) empty prediction +0; u1 (0.8) answers an unanswerable -1 -> 2; a2 (0.9) F1 0 -> 2. Best 3/4.
    m = result.metrics
    assert (m["best_f1"], m["best_f1_threshold"]) == (75.0, 0.1)
    # At 0.1: a1 answered (1), a2 abstains (0), u1 and u2 abstain (1 each): EM 3/4; answerable (1 + 0) / 2;
    # unanswerable (1 + 1) / 2.
    assert (m["best_em"], m["best_answerable_em"], m["best_answerable_f1"], m["best_unanswerable_em"]) == (
        75.0, 50.0, 50.0, 100.0)
    # Without threshold: a1 1, a2 0, u1 0, u2 1.
    assert (m["exact_match"], m["f1"], m["answerable_f1"], m["unanswerable_exact_match"]) == (50.0, 50.0, 50.0, 50.0)
    # The corrected search agrees here (no ties): 75 at 0.1.
    assert result.corrected == {"corrected_best_f1": 75.0, "corrected_best_em": 75.0,
                                "corrected_best_f1_threshold": 0.1}


def test_tied_probabilities_make_the_official_best_f1_depend_on_file_order():
    annotations = _annotations(("q1", ["Ridley Scott"]), ("q2", [""]))
    right, wrong = _prediction("q1", "Ridley Scott"), _prediction("q2", "Some answer")  # probabilities all 0
    # Order q1, q2: start 1 (q2 abstained); q1 +1 -> 2 = best at threshold 0.0; q2 -1. best_f1 = 2/2 = 100 ...
    first = mkqa_apple.score_apple_language(annotations, [right, wrong], "en")
    assert first.metrics["best_f1"] == 100.0
    # ... but threshold 0.0 answers both (0 > 0 is false): EM (1 + 0) / 2 = 50, inconsistent with best_f1.
    assert first.metrics["best_em"] == 50.0
    # Order q2, q1: q2 -1 -> 0, q1 +1 -> 1, never above the start (1): best_f1 = 50.
    second = mkqa_apple.score_apple_language(annotations, [wrong, right], "en")
    assert second.metrics["best_f1"] == 50.0
    # Corrected: ties move together; "abstain on all" (50) is not beaten by "answer both" (50); any order.
    for result in (first, second):
        assert result.corrected == {"corrected_best_f1": 50.0, "corrected_best_em": 50.0,
                                    "corrected_best_f1_threshold": None}


def test_binary_answer_replaces_the_prediction():
    annotations = _annotations(("b", ["yes"]))
    result = mkqa_apple.score_apple_language(annotations, [_prediction("b", "wrong words", binary="yes")], "en")
    assert result.metrics["f1"] == 100.0


def test_nan_where_the_official_script_gives_nan():
    # No unanswerable question: the official mean over an empty list is NaN.
    result = mkqa_apple.score_apple_language(_annotations(("a", ["x"])), [_prediction("a", "x")], "en")
    assert result.metrics["best_unanswerable_em"] != result.metrics["best_unanswerable_em"]


def test_real_records_oracle_and_macro(shared_dir):
    folder = shared_dir / "data" / "mkqa"
    records = (mkqa.load_mkqa_records(folder / "hf_dummy_mkqa_5examples.jsonl")
               + mkqa.load_mkqa_records(folder / "test_mkqa_6examples.jsonl.gz"))
    predictions = {}
    for lang in ("en", "ja", "zh_cn"):
        predictions[lang] = {r.example_id: _prediction(r.example_id, r.answers[lang][0].text or "")
                             for r in records}
    report = mkqa_apple.score_mkqa_apple(records, predictions)
    # Oracle text (or No Answer for the 4 answerless records): every question scores 1.
    assert report.macro["best_f1"] == 100.0 and report.macro["f1"] == 100.0
    assert {lang: r.answerable for lang, r in report.per_language.items()} == {"en": 7, "ja": 7, "zh_cn": 7}
    assert report.coverage.matched == 33 and not report.coverage.missing_ids


def test_missing_and_unknown_predictions(shared_dir):
    records = mkqa.load_mkqa_records(shared_dir / "data" / "mkqa" / "hf_dummy_mkqa_5examples.jsonl")
    first = records[0].example_id
    # Only one prediction: the 4 others are scored as No Answer and reported missing.
    report = mkqa_apple.score_mkqa_apple(records, {"en": {first: _prediction(first, "11 years")}})
    assert len(report.coverage.missing_ids) == 4
    with pytest.raises(UserError, match="record 'nope'"):
        mkqa_apple.score_mkqa_apple(records, {"en": {"nope": _prediction("nope", "x")}})
    with pytest.raises(UserError, match="unknown MKQA language 'xx'"):
        mkqa_apple.score_mkqa_apple(records, {"xx": {}})
