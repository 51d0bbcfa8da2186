"""The scorers as SeqIO metric functions: the seqio calling convention and hand-checked values."""

import inspect
import math

import pytest

from class_jax.runtime.errors import UserError
from class_jax.evaluation import metrics

METRIC_FNS = [metrics.xor_retrieve_recall, metrics.xor_full_f1_em_bleu, metrics.xor_engspan_f1_em,
              metrics.mkqa_cora_f1, metrics.mkqa_apple_f1]


@pytest.mark.parametrize("fn", METRIC_FNS)
def test_seqio_signature(fn):
    # seqio.Evaluator calls metric_fn(targets=..., predictions=...).
    assert list(inspect.signature(fn).parameters) == ["targets", "predictions"]


def test_seqio_accepts_them_as_prediction_metrics():
    seqio = pytest.importorskip("seqio")
    for fn in METRIC_FNS:
        metric = seqio.metrics.LegacyMetric.empty(fn, postprocess_fn=None)
        assert metric.model_output_type == seqio.metrics.ModelOutputType.PREDICTION


def test_xor_full_metric_by_hand():
    targets = [{"id": "q1", "lang": "fi", "answers": ["Helsinki"]},
               {"id": "q2", "lang": "fi", "answers": ["Suomen tasavalta", "Suomi"]},
               {"lang": "fi", "answers": ["1917"]}]  # no id needed
    result = metrics.xor_full_f1_em_bleu(targets, ["Helsinki", "tasavalta", ""])
    # As in xor_full_test: F1 (1 + 2/3 + 0) / 3, EM 1/3, BLEU 2/3 (empty prediction: BLEU 0); official / 7.
    assert result["f1"] == pytest.approx((1 + 2 / 3) / 3 / 7 * 100)
    assert result["em"] == pytest.approx(100 / 3 / 7)
    assert result["bleu"] == pytest.approx(200 / 3 / 7)
    assert result["f1_fi"] == pytest.approx((1 + 2 / 3) / 3 * 100)
    assert result["corrected_f1"] == pytest.approx((1 + 2 / 3) / 3 * 100)
    assert all(isinstance(v, float) for v in result.values())


def test_underscored_ids_are_not_cut_in_metric_fns():
    # Targets are matched by position, so MIA-style ids ("123_ja") cannot collide the way file keys would.
    targets = [{"id": "1_fi", "lang": "fi", "answers": ["a b"]}, {"id": "1_ru", "lang": "ru", "answers": ["c d"]}]
    result = metrics.xor_full_f1_em_bleu(targets, ["a b", "c d"])
    assert result["f1_fi"] == 100 and result["f1_ru"] == 100


def test_xor_retrieve_metric_by_hand():
    targets = [{"lang": "te", "answers": ["Portland"]}, {"lang": "te", "answers": ["yes"]},
               {"lang": "bn", "answers": ["art"]}]
    predictions = [["The city of Portland"], ["whatever"], ["They start early"]]
    result = metrics.xor_retrieve_recall(targets, predictions)
    # Official: te 1/1 (yes/no skipped), bn 1/1 ("art" inside "start") -> 100; corrected: bn 0/1 -> (100 + 0) / 2.
    assert result["R@2kt"] == 100.0 and result["R@5kt_bn"] == 100.0
    assert result["corrected_R@2kt"] == pytest.approx(50.0)


def test_xor_engspan_metric():
    result = metrics.xor_engspan_f1_em([{"lang": "ko", "answers": ["the Han River"]}], ["Han river"])
    assert (result["f1"], result["em"], result["f1_ko"]) == (100.0, 100.0, 100.0)


def test_mkqa_cora_metric_groups_languages_with_shared_ids():
    targets = [{"id": "7", "lang": "en", "answers": ["Ridley Scott"]},
               {"id": "7", "lang": "de", "answers": ["Ridley Scott"]}]
    result = metrics.mkqa_cora_f1(targets, ["Ridley Scott", "Scott"])
    # en: F1 1; de: "scott" vs "ridley scott" P 1, R 1/2 -> F1 2/3; mean over 2 languages.
    assert result["f1"] == pytest.approx((100 + 200 / 3) / 2)


def test_mkqa_apple_metric_with_no_answer_probabilities():
    targets = [{"lang": "en", "answers": ["Ridley Scott"]}, {"lang": "en", "answers": ["Paris"]},
               {"lang": "en", "answers": [""]}, {"lang": "en", "answers": [""]}]
    predictions = [{"prediction": "Ridley Scott", "no_answer_prob": 0.1},
                   {"prediction": "London", "no_answer_prob": 0.9},
                   {"prediction": "something", "no_answer_prob": 0.8}, ""]
    result = metrics.mkqa_apple_f1(targets, predictions)
    # Sweep as in mkqa_apple_test, but the last prediction is a plain "" with probability 0, swept first: +0.
    # Start 2; "" (0) +0; Ridley Scott (0.1) +1 -> 3 (best, threshold 0.1); "something" -1; London +0 -> 75.
    assert (result["best_f1"], result["best_f1_en"], result["best_f1_threshold"]) == (75.0, 75.0, 0.1)
    assert result["corrected_best_f1"] == 75.0
    assert math.isnan(metrics.mkqa_apple_f1([{"lang": "en", "answers": ["x"]}], ["x"])["best_unanswerable_em"])


def test_metric_inputs_are_checked():
    with pytest.raises(UserError, match="2 targets but 1 predictions"):
        metrics.xor_full_f1_em_bleu([{"lang": "fi", "answers": ["a"]}] * 2, ["a"])
    with pytest.raises(UserError, match=r"predictions\[0\]: expected an answer string"):
        metrics.xor_full_f1_em_bleu([{"lang": "fi", "answers": ["a"]}], [["a"]])
    with pytest.raises(UserError, match=r"targets\[0\]: 'answers' must be a non-empty list"):
        metrics.xor_engspan_f1_em([{"lang": "fi", "answers": []}], ["a"])
    with pytest.raises(UserError, match=r"predictions\[0\]: expected a list of passage texts"):
        metrics.xor_retrieve_recall([{"lang": "fi", "answers": ["a"]}], ["a passage, not a list"])
