"""XOR-EnglishSpan F1 / EM, as the official `eval_xor_engspan.py` computes them.

Official rule (reproduced exactly):
  * Gold answers are English spans; both sides get the SQuAD v1.1 normalisation (articles removed) and are split
    on whitespace, whatever the question's language (no MeCab here).
  * A prediction is a string or an object with an "answer" string. A question without prediction scores 0.
  * Languages are visited in the fixed order ar bn fi ja ko ru te; a language without questions is skipped and
    the average divides by the number of languages that had questions.
  * Precision and recall are each maximised over the gold answers independently of F1 (so they may come from
    different gold answers); the script computes but does not print them, and they are reported here too.

The official script silently ignores gold records in any other language; here such a record is an error, so a
mislabelled file cannot lose questions unnoticed. There is no corrected variant: nothing here looks wrong.
"""

import dataclasses
from typing import Mapping, Sequence

from class_jax.runtime.errors import UserError
from class_jax.evaluation import text
from class_jax.evaluation.records import AnswerPredictions, Coverage, GoldQuestion, repeated_ids
from class_jax.evaluation.xor_full import as_answer_predictions, reject_unknown_ids

# The official script's language list, in its order.
XOR_ENGSPAN_LANGUAGES = ("ar", "bn", "fi", "ja", "ko", "ru", "te")


@dataclasses.dataclass(frozen=True)
class SpanScores:
    """Per-language percentages over `count` questions."""
    count: int
    f1: float
    em: float
    precision: float
    recall: float


@dataclasses.dataclass(frozen=True)
class EngSpanReport:
    """XOR-EnglishSpan scores: per language and averaged over the languages with questions (None if none)."""
    per_language: dict[str, SpanScores]
    f1: float | None
    em: float | None
    coverage: Coverage

    def to_dict(self) -> dict:
        """Summary for the final JSON line."""
        return {"metric": "xor_engspan", "f1": self.f1, "em": self.em,
                "per_language": {k: dataclasses.asdict(v) for k, v in self.per_language.items()},
                "coverage": self.coverage.to_dict()}


def span_precision_recall_f1(prediction: str, gold: str) -> tuple[float, float, float]:
    """SQuAD token precision, recall and F1 of one prediction against one English gold answer."""
    return text.token_precision_recall_f1(text.normalize_squad_answer(prediction).split(),
                                          text.normalize_squad_answer(gold).split())


def span_exact_match(prediction: str, gold: str) -> float:
    """1.0 when both normalise to the same string (two answers that normalise to "" match)."""
    return float(text.normalize_squad_answer(prediction) == text.normalize_squad_answer(gold))


def question_span_scores(prediction: str, gold_answers: Sequence[str]) -> tuple[float, float, float, float]:
    """(F1, EM, precision, recall) of one prediction, each maximised over the gold answers on its own."""
    triples = [span_precision_recall_f1(prediction, gold) for gold in gold_answers]
    return (max(t[2] for t in triples), text.max_over_gold(span_exact_match, prediction, gold_answers),
            max(t[0] for t in triples), max(t[1] for t in triples))


def score_xor_engspan(gold: Sequence[GoldQuestion], predictions: Mapping[str, str] | AnswerPredictions, *,
                      allow_unknown_ids: bool = False, gold_source: str = "gold data") -> EngSpanReport:
    """Computes XOR-EnglishSpan F1 / EM per language and their average.

    Args:
        gold: gold questions with English span answers.
        predictions: `{question id: answer}` (answer objects already reduced to their text by the loader).
        allow_unknown_ids: skip (and count) prediction ids absent from the gold instead of failing.
        gold_source: name of the gold data in messages.

    Returns:
        The report.

    Raises:
        UserError: for an unknown prediction id (unless allowed) or a gold language outside ar bn fi ja ko ru te.
    """
    predictions = as_answer_predictions(predictions)
    for question in gold:
        if question.lang not in XOR_ENGSPAN_LANGUAGES:
            raise UserError(f"{gold_source}: line {question.line} (id {question.id!r}): language "
                            f"{question.lang!r} is not one of {', '.join(XOR_ENGSPAN_LANGUAGES)}")
    gold_ids = {q.id for q in gold}
    unknown = reject_unknown_ids(list(predictions.answers), gold_ids, predictions.source, gold_source,
                                 allow_unknown_ids)
    per_language = {}
    missing = []
    for lang in XOR_ENGSPAN_LANGUAGES:
        questions = [q for q in gold if q.lang == lang]
        if not questions:
            continue
        sums = [0.0, 0.0, 0.0, 0.0]
        for question in questions:
            prediction = predictions.answers.get(question.id)
            if prediction is None:
                missing.append(question.id)
                continue
            for i, value in enumerate(question_span_scores(prediction, question.answers)):
                sums[i] += value
        total = len(questions)
        per_language[lang] = SpanScores(count=total, f1=100.0 * sums[0] / total, em=100.0 * sums[1] / total,
                                        precision=100.0 * sums[2] / total, recall=100.0 * sums[3] / total)
    f1 = sum(s.f1 for s in per_language.values()) / len(per_language) if per_language else None
    em = sum(s.em for s in per_language.values()) / len(per_language) if per_language else None
    coverage = Coverage(
        gold_questions=len(gold), prediction_records=predictions.records,
        matched=sum(q.id in predictions.answers for q in gold), missing_ids=tuple(missing),
        duplicate_ids=predictions.duplicate_ids, unknown_ids=unknown,
        duplicate_gold_ids=repeated_ids(q.id for q in gold))
    return EngSpanReport(per_language=per_language, f1=f1, em=em, coverage=coverage)


def format_official_report(report: EngSpanReport) -> list[str]:
    """The lines the official script prints."""
    lines = []
    for lang in XOR_ENGSPAN_LANGUAGES:
        lines.append(f"Evaluating F1, EM scores for {lang}")
        scores = report.per_language.get(lang)
        if scores is None:
            lines.append("no examples in this language")
        else:
            lines.append(f"F1: {scores.f1}, EM:{scores.em}")
    lines.append("Avg scores:")
    lines.append("n/a (no language with questions)" if report.f1 is None
                 else f"F1: {report.f1}, EM: {report.em}")
    return lines
