"""The official-compatible scorers as SeqIO metric functions: `fn(targets, predictions) -> {name: float}`.

SeqIO hands a metric function the postprocessed targets and predictions of a whole eval split, aligned by
position; so here prediction i always belongs to target i (ids are not needed and repeated ids are harmless).
Scores are percentages, as the official scripts print them; an average the official rule leaves undefined (no
question at all) is NaN. Per-language figures are named "<metric>_<lang>"; corrected variants "corrected_<metric>".
"""

import math
from typing import Any, Mapping, Optional, Sequence

from class_jax.runtime.errors import UserError
from class_jax.evaluation import files, mkqa, mkqa_apple, xor_engspan, xor_full, xor_retrieve
from class_jax.evaluation.records import GoldQuestion, MkqaPrediction, RetrievalPrediction


def _gold_from_targets(targets: Sequence[Mapping[str, Any]]) -> list[GoldQuestion]:
    """Targets -> gold questions keyed by position ("0", "1", ...), validated like gold file records."""
    if not targets:
        raise UserError("metric called with no targets")
    return [files.gold_question_from_record({**target, "id": str(i)} if isinstance(target, Mapping) else target,
                                            f"targets[{i}]") for i, target in enumerate(targets)]


def _check_aligned(targets: Sequence[Any], predictions: Sequence[Any]) -> None:
    if len(targets) != len(predictions):
        raise UserError(f"metric got {len(targets)} targets but {len(predictions)} predictions")


def _as_float(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _answer_strings(predictions: Sequence[Any]) -> dict[str, str]:
    for i, prediction in enumerate(predictions):
        if not isinstance(prediction, str):
            raise UserError(f"predictions[{i}]: expected an answer string, got {type(prediction).__name__}")
    return {str(i): prediction for i, prediction in enumerate(predictions)}


def _answer_report_metrics(report: xor_full.AnswerScoreReport) -> dict[str, float]:
    metrics = {"f1": _as_float(report.f1), "em": _as_float(report.em), "bleu": _as_float(report.bleu),
               "corrected_f1": _as_float(report.corrected_f1), "corrected_em": _as_float(report.corrected_em),
               "corrected_bleu": _as_float(report.corrected_bleu)}
    for prefix, per_language in (("", report.per_language), ("corrected_", report.corrected_per_language)):
        for lang, scores in per_language.items():
            metrics.update({f"{prefix}f1_{lang}": scores.f1, f"{prefix}em_{lang}": scores.em,
                            f"{prefix}bleu_{lang}": scores.bleu})
    return metrics


def xor_retrieve_recall(targets: Sequence[Mapping[str, Any]], predictions: Sequence[Sequence[str]]
                        ) -> dict[str, float]:
    """XOR-Retrieve R@2kt / R@5kt (official) and their corrected variants (see `xor_retrieve_recall_tokenized`)."""
    return xor_retrieve_recall_tokenized(targets, predictions)


def xor_retrieve_recall_tokenized(targets: Sequence[Mapping[str, Any]], predictions: Sequence[Sequence[str]],
                                  tokenize: Optional[xor_retrieve.Tokenizer] = None) -> dict[str, float]:
    """`xor_retrieve_recall` with a chosen word tokenizer (the seqio metric's signature has no room for one).

    Args:
        targets: one dict per question: {"lang": "ja", "answers": ["English span", ...]} ("id" optional, unused).
        predictions: for each question, the retrieved passage texts in rank order (a list of strings).
        tokenize: the word tokenizer (default: the official one, `text.official_word_tokenize`); a memoised one
          saves time when the same passages recur across questions.

    Returns:
        {"R@2kt", "R@5kt", "R@2kt_<lang>", ..., "corrected_R@2kt", "corrected_R@5kt", "corrected_R@2kt_<lang>", ...}.
    """
    _check_aligned(targets, predictions)
    gold = _gold_from_targets(targets)
    records = []
    for i, (question, passages) in enumerate(zip(gold, predictions)):
        if isinstance(passages, str) or not all(isinstance(p, str) for p in passages):
            raise UserError(f"predictions[{i}]: expected a list of passage texts")
        records.append(RetrievalPrediction(id=question.id, lang=question.lang, passages=tuple(passages), index=i))
    result = xor_retrieve.score_xor_retrieve(gold, records, tokenize=tokenize)
    metrics = {}
    for budget in result.budgets:
        metrics[budget.name] = _as_float(budget.macro)
        metrics.update({f"{budget.name}_{lang}": r.recall for lang, r in budget.per_language.items()})
    for budget in result.budgets:
        metrics[f"corrected_{budget.name}"] = _as_float(budget.corrected_macro)
        metrics.update({f"corrected_{budget.name}_{lang}": r.recall
                        for lang, r in budget.corrected_per_language.items()})
    return metrics


def xor_full_f1_em_bleu(targets: Sequence[Mapping[str, Any]], predictions: Sequence[str]) -> dict[str, float]:
    """XOR-Full F1 / EM / BLEU (official: the sum over languages divided by 7) and the corrected variant.

    Args:
        targets: one dict per question: {"lang": "ja", "answers": ["answer in the question's language", ...]}.
        predictions: one answer string per question.

    Returns:
        {"f1", "em", "bleu", "f1_<lang>", ..., "corrected_f1", "corrected_em", "corrected_bleu", ...}.
    """
    _check_aligned(targets, predictions)
    report = xor_full.score_xor_full(_gold_from_targets(targets), _answer_strings(predictions))
    return _answer_report_metrics(report)


def xor_engspan_f1_em(targets: Sequence[Mapping[str, Any]], predictions: Sequence[str]) -> dict[str, float]:
    """XOR-EnglishSpan F1 / EM (official).

    Args:
        targets: one dict per question: {"lang": "ja", "answers": ["English span", ...]}.
        predictions: one English answer string per question.

    Returns:
        {"f1", "em", "f1_<lang>", "em_<lang>", ...}.
    """
    _check_aligned(targets, predictions)
    report = xor_engspan.score_xor_engspan(_gold_from_targets(targets), _answer_strings(predictions))
    metrics = {"f1": _as_float(report.f1), "em": _as_float(report.em)}
    for lang, scores in report.per_language.items():
        metrics.update({f"f1_{lang}": scores.f1, f"em_{lang}": scores.em})
    return metrics


def mkqa_cora_f1(targets: Sequence[Mapping[str, Any]], predictions: Sequence[str]) -> dict[str, float]:
    """MKQA F1 / EM / BLEU as CLASS / CORA papers compute it (macro over the languages present).

    Args:
        targets: one dict per (question, language), in XOR format after CORA's conversion
            (`mkqa.convert_to_xor`): {"lang": "zh_cn", "answers": [text and aliases of every answer object]}.
            Questions without answer text are not targets (the conversion drops them).
        predictions: one answer string per target.

    Returns:
        {"f1", "em", "bleu", "f1_<lang>", ..., "corrected_f1", ...}.
    """
    _check_aligned(targets, predictions)
    gold = _gold_from_targets(targets)
    answers = _answer_strings(predictions)
    by_language: dict[str, dict[str, str]] = {}
    for question in gold:
        by_language.setdefault(question.lang, {})[question.id] = answers[question.id]
    return _answer_report_metrics(mkqa.score_mkqa_cora(gold, by_language))


def _apple_prediction(prediction: Any, example_id: str, index: int) -> MkqaPrediction:
    if isinstance(prediction, str):
        return MkqaPrediction(example_id=example_id, prediction=prediction)
    if isinstance(prediction, Mapping):
        return files.mkqa_prediction_from_record({**prediction, "example_id": example_id},
                                                 f"predictions[{index}]")
    raise UserError(f"predictions[{index}]: expected a string or a dict with 'prediction'")


def mkqa_apple_f1(targets: Sequence[Mapping[str, Any]], predictions: Sequence[Any]) -> dict[str, float]:
    """Apple's official MKQA metric (best no-answer threshold), per language and macro-averaged.

    Args:
        targets: one dict per (question, language), unanswerable questions included:
            {"lang": "ja", "answers": [...]} where answers lists, for each MKQA answer object, its text ("" when
            the text is null, i.e. No Answer) followed by its aliases.
        predictions: per target, an answer string ("" = No Answer), or a dict {"prediction": str,
            "binary_answer": "yes" | "no" | None, "no_answer_prob": float} as in Apple's prediction files.

    Returns:
        Apple's figures ("best_f1", "best_em", "best_answerable_f1", ..., "f1", "exact_match") macro-averaged,
        per language as "<name>_<lang>", and "corrected_best_f1" / "corrected_best_em" (+ per language).
    """
    _check_aligned(targets, predictions)
    gold = _gold_from_targets(targets)
    by_language: dict[str, list[GoldQuestion]] = {}
    for question in gold:
        if question.lang not in mkqa.MKQA_LANGUAGES:
            raise UserError(f"targets[{question.id}]: unknown MKQA language {question.lang!r}")
        by_language.setdefault(question.lang, []).append(question)
    metrics: dict[str, float] = {}
    per_language = {}
    for lang, questions in by_language.items():
        annotations = {q.id: mkqa_apple.AppleAnnotation(example_id=q.id, answers=q.answers) for q in questions}
        ordered = [_apple_prediction(predictions[int(q.id)], q.id, int(q.id)) for q in questions]
        per_language[lang] = mkqa_apple.score_apple_language(annotations, ordered, lang)
        metrics.update({f"{name}_{lang}": _as_float(value) for name, value in per_language[lang].metrics.items()})
        metrics.update({f"{name}_{lang}": _as_float(per_language[lang].corrected[name])
                        for name in mkqa_apple.CORRECTED_METRICS[:2]})
    macro, corrected_macro = mkqa_apple.macro_averages(per_language)
    metrics.update({name: _as_float(value) for name, value in {**macro, **corrected_macro}.items()})
    return metrics


# The names each metric function returns, as fnmatch patterns ("*" stands for a language), so that a training run
# can check before it starts that the dev metric it selects checkpoints by will exist (trainer/dev_selection.py).
_ANSWER_METRIC_NAMES = ("f1", "em", "bleu", "f1_*", "em_*", "bleu_*", "corrected_f1", "corrected_em", "corrected_bleu",
                        "corrected_f1_*", "corrected_em_*", "corrected_bleu_*")
xor_retrieve_recall.metric_names = ("R@2kt", "R@5kt", "R@2kt_*", "R@5kt_*", "corrected_R@2kt", "corrected_R@5kt",
                                    "corrected_R@2kt_*", "corrected_R@5kt_*")
xor_full_f1_em_bleu.metric_names = _ANSWER_METRIC_NAMES
mkqa_cora_f1.metric_names = _ANSWER_METRIC_NAMES
xor_engspan_f1_em.metric_names = ("f1", "em", "f1_*", "em_*")
