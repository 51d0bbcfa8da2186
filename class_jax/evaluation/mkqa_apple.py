"""Apple's official MKQA metric (`mkqa_eval.py` / `mkqa_eval_all_languages.py`), reproduced, plus a corrected
threshold search.

Official rule (reproduced exactly, quirks included):
  * Gold: for each answer object, its text (null -> "", which means No Answer) and its aliases, as a set; a
    question is unanswerable when that set is {""} (unanswerable and long_answer questions).
  * Prediction text = binary_answer ("yes"/"no") when given, else the prediction; "" means No Answer.
  * Normalisation per language: lowercase, delete ASCII punctuation, delete the language's articles (a regex per
    language; Arabic's deletes every "ال", French / Italian ones have no closing word boundary), then split on
    whitespace, except zh_cn zh_hk zh_tw ja th km where every non-space character is a token.
  * F1 / EM per gold answer, maximised; if either side has no token, F1 is 1 when both have none, else 0.
  * Best no-answer threshold: start from "abstain on everything" with threshold 0.0, walk predictions sorted by
    no_answer_prob (ties kept in prediction-file order), and keep the running score's first maximum. Ties are
    split one question at a time, so with equal probabilities (e.g. none given) best_f1 is the best *prefix of the
    prediction file* — it depends on the file order — while best_em and the other "best_*" figures apply the
    threshold to whole ties (`prob > threshold` abstains), and 0.0 stays the threshold even when every
    probability is negative.
  * Figures x 100, rounded to 2 decimals; the macro average is the mean of the rounded per-language figures,
    over the languages that have predictions (all 26 for the official number).

Corrected threshold search ("corrected_best_*"): candidate thresholds are "abstain on all" and each distinct
probability; a question is answered when its probability is <= the threshold, ties move together, and F1 / EM are
those of the chosen threshold, so the three figures describe the same decision rule.
"""

import dataclasses
import itertools
import re
import warnings
from typing import Mapping, Sequence

import numpy as np

from class_jax.runtime.errors import UserError
from class_jax.evaluation import text
from class_jax.evaluation.mkqa import MKQA_LANGUAGES, MkqaRecord
from class_jax.evaluation.records import Coverage, MkqaPrediction, merge_coverages, repeated_ids

# Languages Apple scores one character per token.
CHARACTER_TOKENIZED_LANGUAGES = frozenset({"zh_cn", "zh_hk", "zh_tw", "ja", "th", "km"})

# Apple's article patterns, applied after punctuation removal (so the apostrophe forms can never match).
ARTICLE_PATTERNS = {lang: re.compile(pattern) for lang, pattern in {
    "en": r"\b(a|an|the)\b",
    "es": r"\b(un|una|unos|unas|el|la|los|las)\b",
    "vi": r"\b(của|là|cái|chiếc|những)\b",
    "de": r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b",
    "ar": r"\sال^|ال",
    "nl": r"\b(de|het|een|des|der|den)\b",
    "sv": r"\b(en|ett)\b",
    "da": r"\b(en|et)\b",
    "no": r"\b(en|et|ei)\b",
    "fr": r"\b(le|la|l'|les|du|de|d'|des|un|une|des)",
    "pt": r"\b(o|a|os|as|um|uma|uns|umas)\b",
    "it": r"\b(il|lo|la|l'|i|gli|le|del|dello|della|dell'|dei|degli|degl'|delle|un'|uno|una|un)",
    "fi": r"\b(se|yks|yksi)\b",
    "hu": r"\b(a|az|egy)\b",
}.items()}

# Metric names of the official output, in its order (the last five are its --verbose extras).
OFFICIAL_METRICS = ("best_em", "best_f1", "best_answerable_em", "best_answerable_f1", "best_unanswerable_em",
                    "best_f1_threshold", "exact_match", "f1", "answerable_exact_match", "answerable_f1",
                    "unanswerable_exact_match")
CORRECTED_METRICS = ("corrected_best_f1", "corrected_best_em", "corrected_best_f1_threshold")


@dataclasses.dataclass(frozen=True)
class AppleAnnotation:
    """One question's gold for one language: the answer set ("" = No Answer) and answer types."""
    example_id: str
    answers: tuple[str, ...]
    types: tuple[str, ...] = ()

    @property
    def answerable(self) -> bool:
        """False when the only gold answer is No Answer."""
        return set(self.answers) != {""}


def apple_normalize(answer: str, lang: str) -> str:
    """Apple's per-language normalisation; the result's whitespace-separated tokens are what F1 counts."""
    answer = text.remove_ascii_punctuation(answer.lower())
    pattern = ARTICLE_PATTERNS.get(lang)
    if pattern is not None:
        answer = pattern.sub(" ", answer)
    tokens = [ch for ch in answer if ch.strip()] if lang in CHARACTER_TOKENIZED_LANGUAGES else answer.split()
    return " ".join(tokens)


def apple_f1(prediction: str, gold: str, lang: str) -> float:
    """Apple's token F1 of one prediction against one gold answer ("" is No Answer on either side)."""
    gold_tokens = apple_normalize(gold, lang).split() if gold else []
    prediction_tokens = apple_normalize(prediction, lang).split() if prediction else []
    if not gold_tokens or not prediction_tokens:
        return float(gold_tokens == prediction_tokens)
    return text.token_precision_recall_f1(prediction_tokens, gold_tokens)[2]


def apple_exact_match(prediction: str, gold: str, lang: str) -> float:
    """1.0 when both sides normalise to the same string."""
    return float(apple_normalize(prediction, lang) == apple_normalize(gold, lang))


def annotations_for_language(records: Sequence[MkqaRecord], lang: str, source: str = "gold data"
                             ) -> dict[str, AppleAnnotation]:
    """Apple's gold for one language (a repeated example id keeps its last record, as Apple's reader does).

    Raises:
        UserError: when a record has no answers for `lang`, or none at all (the official script asserts).
    """
    annotations = {}
    for record in records:
        if not record.answers.get(lang):
            raise UserError(f"{source}: line {record.line} (example {record.example_id}): no answers for {lang!r}")
        answers: list[str] = []
        for answer in record.answers[lang]:
            answers.append(answer.text or "")
            answers.extend(answer.aliases)
        annotations[record.example_id] = AppleAnnotation(
            example_id=record.example_id, answers=tuple(dict.fromkeys(answers)),
            types=tuple(dict.fromkeys(a.type for a in record.answers[lang])))
    return annotations


def _official_mean(values: Sequence[float]) -> float:
    """round(100 x numpy mean, 2), NaN for no values, as the official script computes each summary figure."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # mean of an empty list: NaN, as officially
        return float(round(100.0 * np.mean(list(values)), 2))


def _apply_threshold(scores: Mapping[str, float], probabilities: Mapping[str, float],
                     annotations: Mapping[str, AppleAnnotation], threshold: float) -> list[float]:
    """Official: abstain when prob > threshold (then 1 for unanswerable gold, 0 otherwise), else keep the score."""
    return [float(not annotations[q].answerable) if probabilities[q] > threshold else score
            for q, score in scores.items()]


def _official_threshold_search(order: Sequence[str], raw_f1: Mapping[str, float], answer_text: Mapping[str, str],
                               probabilities: Mapping[str, float], annotations: Mapping[str, AppleAnnotation]
                               ) -> tuple[float, float]:
    """Apple's sweep: (best F1 x 100, its threshold), one question at a time in `order` sorted by probability."""
    best_threshold = 0.0
    current = best = sum(1 for q in annotations.values() if not q.answerable)
    for qid in sorted(order, key=lambda q: probabilities[q]):
        if annotations[qid].answerable:
            current += raw_f1[qid]
        elif answer_text[qid]:
            current -= 1
        if current > best:
            best_threshold, best = probabilities[qid], current
    return 100.0 * best / len(raw_f1), best_threshold


def corrected_threshold_search(raw_f1: Mapping[str, float], raw_em: Mapping[str, float],
                               probabilities: Mapping[str, float], annotations: Mapping[str, AppleAnnotation]
                               ) -> tuple[float, float, float | None]:
    """Best threshold with ties moved together and F1 / EM read at that threshold.

    Returns:
        (F1 x 100, EM x 100, threshold); the threshold is None when abstaining on every question is best.
    """
    unanswerable = sum(1 for q in raw_f1 if not annotations[q].answerable)
    f1_total = em_total = float(unanswerable)
    best = (f1_total, em_total, None)
    ordered = sorted(raw_f1, key=lambda q: probabilities[q])
    for probability, group in itertools.groupby(ordered, key=lambda q: probabilities[q]):
        for qid in group:
            lost = 0.0 if annotations[qid].answerable else 1.0  # an unanswered unanswerable question scored 1
            f1_total += raw_f1[qid] - lost
            em_total += raw_em[qid] - lost
        if f1_total > best[0]:
            best = (f1_total, em_total, probability)
    count = len(raw_f1)
    return 100.0 * best[0] / count, 100.0 * best[1] / count, best[2]


@dataclasses.dataclass(frozen=True)
class AppleLanguageResult:
    """One language: the official figures (rounded as officially) and the corrected ones (unrounded)."""
    count: int
    answerable: int
    metrics: dict[str, float]
    corrected: dict[str, float | None]


def score_apple_language(annotations: Mapping[str, AppleAnnotation], predictions: Sequence[MkqaPrediction],
                         lang: str) -> AppleLanguageResult:
    """Scores one language as Apple's `mkqa_eval.evaluate(..., verbose=True)`.

    Args:
        annotations: gold per example id (every id must have a prediction).
        predictions: one prediction per gold id, in prediction-file order (this order breaks probability ties).
        lang: the language.

    Returns:
        The result.
    """
    by_id = {p.example_id: p for p in predictions}
    answer_text = {q: by_id[q].answer_text for q in annotations}
    raw_f1 = {q: text.max_over_gold(lambda p, g: apple_f1(p, g, lang), answer_text[q], a.answers)
              for q, a in annotations.items()}
    raw_em = {q: text.max_over_gold(lambda p, g: apple_exact_match(p, g, lang), answer_text[q], a.answers)
              for q, a in annotations.items()}
    probabilities = {p.example_id: p.no_answer_prob for p in predictions}
    best_f1, threshold = _official_threshold_search([p.example_id for p in predictions], raw_f1, answer_text,
                                                    probabilities, annotations)
    answerable = [q for q in annotations if annotations[q].answerable]
    unanswerable = [q for q in annotations if not annotations[q].answerable]

    def thresholded(scores: Mapping[str, float], ids: Sequence[str]) -> list[float]:
        return _apply_threshold({q: scores[q] for q in ids}, probabilities, annotations, threshold)

    metrics = {
        "best_em": _official_mean(thresholded(raw_em, list(annotations))),
        "best_f1": round(best_f1, 2),
        "best_answerable_em": _official_mean(thresholded(raw_em, answerable)),
        "best_answerable_f1": _official_mean(thresholded(raw_f1, answerable)),
        "best_unanswerable_em": _official_mean(thresholded(raw_em, unanswerable)),
        "best_f1_threshold": round(threshold, 2),
        "exact_match": _official_mean(raw_em.values()),
        "f1": _official_mean(raw_f1.values()),
        "answerable_exact_match": _official_mean([raw_em[q] for q in answerable]),
        "answerable_f1": _official_mean([raw_f1[q] for q in answerable]),
        "unanswerable_exact_match": _official_mean([raw_em[q] for q in unanswerable]),
    }
    corrected_f1, corrected_em, corrected_threshold = corrected_threshold_search(raw_f1, raw_em, probabilities,
                                                                                 annotations)
    return AppleLanguageResult(count=len(annotations), answerable=len(answerable), metrics=metrics, corrected={
        "corrected_best_f1": corrected_f1, "corrected_best_em": corrected_em,
        "corrected_best_f1_threshold": corrected_threshold})


def macro_averages(per_language: Mapping[str, AppleLanguageResult]
                   ) -> tuple[dict[str, float], dict[str, float]]:
    """(official macro, corrected macro) over languages; empty dicts when there is no language.

    Official: each figure is the mean of the *rounded* per-language figures, rounded again (threshold included).
    Corrected: plain means of the unrounded corrected F1 and EM.
    """
    if not per_language:
        return {}, {}
    official = {name: round(float(np.mean([r.metrics[name] for r in per_language.values()])), 2)
                for name in OFFICIAL_METRICS}
    corrected = {name: float(np.mean([r.corrected[name] for r in per_language.values()]))
                 for name in CORRECTED_METRICS[:2]}
    return official, corrected


@dataclasses.dataclass(frozen=True)
class AppleReport:
    """Apple's metric over several languages, with the official and corrected macro averages."""
    per_language: dict[str, AppleLanguageResult]
    macro: dict[str, float]
    corrected_macro: dict[str, float | None]
    coverage: Coverage

    def to_dict(self) -> dict:
        """Summary for the final JSON line (NaN where the official script gives NaN)."""
        return {"metric": "mkqa_apple", "best_f1": self.macro.get("best_f1"), "macro": self.macro,
                "per_language": {k: v.metrics for k, v in self.per_language.items()},
                "corrected_best_f1": self.corrected_macro.get("corrected_best_f1"),
                "corrected_macro": self.corrected_macro,
                "corrected_per_language": {k: v.corrected for k, v in self.per_language.items()},
                "coverage": self.coverage.to_dict()}


def score_mkqa_apple(records: Sequence[MkqaRecord], predictions: Mapping[str, Mapping[str, MkqaPrediction]], *,
                     duplicate_prediction_ids: Mapping[str, Sequence[str]] | None = None,
                     allow_unknown_ids: bool = False, gold_source: str = "gold data",
                     prediction_sources: Mapping[str, str] | None = None) -> AppleReport:
    """Apple's metric for every language that has predictions, and the macro average over them.

    A gold question without prediction (which the official script refuses with an assertion) is scored as an
    empty prediction with no_answer_prob 0, placed after the file's predictions, and counted as missing.

    Args:
        records: original MKQA records.
        predictions: language -> {example id: prediction}, each in prediction-file order.
        duplicate_prediction_ids: language -> ids repeated in its prediction file (for the coverage report).
        allow_unknown_ids: skip (and count) prediction ids absent from the gold instead of failing.
        gold_source: name of the gold data in messages.
        prediction_sources: language -> prediction file name, for messages.

    Returns:
        The report.

    Raises:
        UserError: for an unknown language or (unless allowed) unknown example id.
    """
    prediction_sources = prediction_sources or {}
    duplicate_prediction_ids = duplicate_prediction_ids or {}
    per_language, coverages = {}, []
    for lang, language_predictions in predictions.items():
        source = prediction_sources.get(lang, f"predictions[{lang!r}]")
        if lang not in MKQA_LANGUAGES:
            raise UserError(f"{source}: unknown MKQA language {lang!r}")
        annotations = annotations_for_language(records, lang, gold_source)
        unknown = [i for i in language_predictions if i not in annotations]
        if unknown and not allow_unknown_ids:
            raise UserError(f"{source}: record {unknown[0]!r}: example id is not in {gold_source}")
        ordered = [p for i, p in language_predictions.items() if i in annotations]
        missing = [i for i in annotations if i not in language_predictions]
        ordered += [MkqaPrediction(example_id=i, prediction="") for i in missing]
        per_language[lang] = score_apple_language(annotations, ordered, lang)
        duplicates = tuple(duplicate_prediction_ids.get(lang, ()))
        coverages.append(Coverage(
            gold_questions=len(records), prediction_records=len(language_predictions) + len(duplicates),
            matched=len(annotations) - len(missing), missing_ids=tuple(f"{lang}:{i}" for i in missing),
            duplicate_ids=tuple(f"{lang}:{i}" for i in duplicates), unknown_ids=tuple(f"{lang}:{i}" for i in unknown),
            duplicate_gold_ids=tuple(f"{lang}:{i}" for i in repeated_ids(r.example_id for r in records))))
    macro, corrected_macro = macro_averages(per_language)
    return AppleReport(per_language=per_language, macro=macro, corrected_macro=corrected_macro,
                       coverage=merge_coverages(coverages))


def format_official_report(report: AppleReport) -> list[str]:
    """A table like the one Apple's all-languages script prints: one row per language, then "Macro Average"."""
    header = ["language", *OFFICIAL_METRICS]
    rows = [[lang, *(result.metrics[m] for m in OFFICIAL_METRICS)] for lang, result in report.per_language.items()]
    if report.macro:
        rows.append(["Macro Average", *(report.macro[m] for m in OFFICIAL_METRICS)])
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    return [" | ".join(str(cell).rjust(width) for cell, width in zip(row, widths)) for row in [header, *rows]]


def format_corrected_report(report: AppleReport) -> list[str]:
    """The corrected threshold search, clearly labelled as not official."""
    lines = ["Corrected threshold search (not official: ties move together, F1 and EM at the chosen threshold):"]
    for lang, result in report.per_language.items():
        c = result.corrected
        threshold = "abstain on all" if c["corrected_best_f1_threshold"] is None else c["corrected_best_f1_threshold"]
        lines.append(f"corrected {lang}: best F1 {c['corrected_best_f1']:.2f}, EM {c['corrected_best_em']:.2f}, "
                     f"threshold {threshold}")
    if report.corrected_macro:
        lines.append(f"corrected macro: best F1 {report.corrected_macro['corrected_best_f1']:.2f}, "
                     f"EM {report.corrected_macro['corrected_best_em']:.2f}")
    return lines
