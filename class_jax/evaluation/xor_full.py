"""XOR-Full F1 / EM / BLEU, as the official `eval_xor_full.py` computes them, plus a corrected variant.

Official rule (reproduced exactly, quirks included):
  * Prediction ids are cut at their last "_" (`id.split("_")[-1]`): "ja_-123" answers question "-123"; two keys
    that collapse to one id keep the later value.
  * Every gold record counts (a repeated gold id is scored twice); a question without prediction scores 0.
  * Japanese: gold answers go through MeCab `-Owakati` as they are; the prediction first gets "・" -> " " and
    "、" -> "," and then MeCab. So an exact copy of a gold "クリス・ヤング" is 2 tokens against the gold's 3 and
    misses EM. Other languages are split on whitespace.
  * Both sides are normalised by `text.normalize_xor_answer`; F1 and EM are SQuAD's, maximised over gold answers.
  * BLEU is NLTK `sentence_bleu(references, hypothesis)` on *strings*, i.e. over characters, 4-gram, no
    smoothing; the hypothesis is the raw prediction but, for Japanese, the references are MeCab's output (spaces
    and a trailing newline included), so even a perfect Japanese answer scores low.
  * Languages: the script's table of 11 (te sw th fi id ja ru ar en bn ko); any other language fails. The average
    sums every table language's score and divides by 7, however many languages the gold data has.

Corrected variant ("corrected_*"): the "・"/"、" replacement is applied to gold answers as well, BLEU compares
the raw prediction with the raw gold answers, and the average is over the languages present in the gold data.

The answer scorer is shared with CORA's MKQA scoring (`class_jax.evaluation.mkqa`), which uses the same
per-question rule with a wider language table, skips gold "No Answer" records and averages over present languages.
"""

import dataclasses
import warnings
from typing import Callable, Mapping, Sequence

from class_jax.runtime.errors import UserError
from class_jax.evaluation import text
from class_jax.evaluation.records import AnswerPredictions, Coverage, GoldQuestion, repeated_ids

# The official script's language table, in its order (the order it prints languages in).
XOR_FULL_LANGUAGES = ("te", "sw", "th", "fi", "id", "ja", "ru", "ar", "en", "bn", "ko")

# The official average divides by the number of XOR-TyDi languages, whatever the data holds.
OFFICIAL_LANGUAGE_DIVISOR = 7


@dataclasses.dataclass(frozen=True)
class AnswerScores:
    """Scores of one prediction against one question's gold answers, each in [0, 1]."""
    f1: float
    em: float
    bleu: float


@dataclasses.dataclass(frozen=True)
class LanguageAnswerScores:
    """Per-language means x 100 over `count` gold questions."""
    count: int
    f1: float
    em: float
    bleu: float


@dataclasses.dataclass(frozen=True)
class AnswerScoreReport:
    """Official and corrected XOR-Full-style scores (percentages).

    Attributes:
        metric: "xor_full" or "mkqa_cora".
        per_language: official per-language scores, languages with at least one question, in table order.
        f1, em, bleu: official averages (None where the official script would divide by zero).
        corrected_per_language: corrected per-language scores.
        corrected_f1, corrected_em, corrected_bleu: corrected averages over the languages present.
        coverage: how the predictions cover the gold questions.
    """
    metric: str
    per_language: dict[str, LanguageAnswerScores]
    f1: float | None
    em: float | None
    bleu: float | None
    corrected_per_language: dict[str, LanguageAnswerScores]
    corrected_f1: float | None
    corrected_em: float | None
    corrected_bleu: float | None
    coverage: Coverage

    def to_dict(self) -> dict:
        """Summary for the final JSON line."""
        return {
            "metric": self.metric, "f1": self.f1, "em": self.em, "bleu": self.bleu,
            "per_language": {k: dataclasses.asdict(v) for k, v in self.per_language.items()},
            "corrected_f1": self.corrected_f1, "corrected_em": self.corrected_em,
            "corrected_bleu": self.corrected_bleu,
            "corrected_per_language": {k: dataclasses.asdict(v) for k, v in self.corrected_per_language.items()},
            "coverage": self.coverage.to_dict(),
        }


def _xor_f1(prediction: str, gold: str) -> float:
    return text.token_precision_recall_f1(text.normalize_xor_answer(prediction).split(),
                                          text.normalize_xor_answer(gold).split())[2]


def _xor_em(prediction: str, gold: str) -> float:
    return float(text.normalize_xor_answer(prediction) == text.normalize_xor_answer(gold))


def character_bleu(references: Sequence[str], hypothesis: str) -> float:
    """NLTK `sentence_bleu` on strings (character n-grams up to 4, uniform weights, no smoothing).

    NLTK warns whenever an n-gram order has no match (the score is then ~0); those warnings are expected here.
    """
    from nltk.translate.bleu_score import sentence_bleu  # pylint: disable=import-outside-toplevel
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return float(sentence_bleu(list(references), hypothesis))


def _japanese_prediction_form(answer: str) -> str:
    """The official pre-MeCab rewrite of a Japanese prediction: "・" -> " ", "、" -> ","."""
    return answer.replace("・", " ").replace("、", ",")


def official_answer_scores(prediction: str, gold_answers: Sequence[str], lang: str) -> AnswerScores:
    """Scores one prediction exactly as the official XOR-Full script does.

    Args:
        prediction: the predicted answer string.
        gold_answers: the question's gold answers.
        lang: the question's language.

    Returns:
        F1, EM and BLEU, each in [0, 1].
    """
    if lang == "ja":
        gold_forms = [text.mecab_wakati(answer) for answer in gold_answers]
        prediction_form = text.mecab_wakati(_japanese_prediction_form(prediction))
    else:
        gold_forms, prediction_form = list(gold_answers), prediction
    return AnswerScores(f1=text.max_over_gold(_xor_f1, prediction_form, gold_forms),
                        em=text.max_over_gold(_xor_em, prediction_form, gold_forms),
                        bleu=character_bleu(gold_forms, prediction))


def corrected_answer_scores(prediction: str, gold_answers: Sequence[str], lang: str) -> AnswerScores:
    """Scores one prediction with both sides treated alike (see the module docstring).

    Args:
        prediction: the predicted answer string.
        gold_answers: the question's gold answers.
        lang: the question's language.

    Returns:
        F1, EM and BLEU, each in [0, 1].
    """
    if lang == "ja":
        gold_forms = [text.mecab_wakati(_japanese_prediction_form(answer)) for answer in gold_answers]
        prediction_form = text.mecab_wakati(_japanese_prediction_form(prediction))
    else:
        gold_forms, prediction_form = list(gold_answers), prediction
    return AnswerScores(f1=text.max_over_gold(_xor_f1, prediction_form, gold_forms),
                        em=text.max_over_gold(_xor_em, prediction_form, gold_forms),
                        bleu=character_bleu(gold_answers, prediction))


@dataclasses.dataclass
class _Sums:
    count: int = 0
    f1: float = 0.0
    em: float = 0.0
    bleu: float = 0.0

    def add(self, scores: AnswerScores | None) -> None:
        self.count += 1
        if scores is not None:
            self.f1 += scores.f1
            self.em += scores.em
            self.bleu += scores.bleu

    def means(self) -> tuple[float, float, float]:
        return self.f1 / self.count, self.em / self.count, self.bleu / self.count


@dataclasses.dataclass(frozen=True)
class LanguageMeans:
    """Per-language mean scores in [0, 1] (official and corrected) and what was skipped on the way."""
    official: dict[str, tuple[int, float, float, float]]
    corrected: dict[str, tuple[int, float, float, float]]
    missing_ids: tuple[str, ...]
    no_answer_skipped: int


def score_gold_questions(gold: Sequence[GoldQuestion], find_prediction: Callable[[GoldQuestion], str | None],
                         language_table: Sequence[str], *, skip_no_answer_gold: bool = False,
                         gold_source: str = "gold data") -> LanguageMeans:
    """Scores every gold question against its prediction, official and corrected, per language.

    Args:
        gold: the gold questions (each record counts, repeated ids included).
        find_prediction: returns a question's predicted answer, or None when it has none (scored 0).
        language_table: the languages the emulated script accepts, in its order.
        skip_no_answer_gold: skip records whose first gold answer is "No Answer" (CORA's MKQA scorer does).
        gold_source: name of the gold data in messages.

    Returns:
        (count, mean F1, mean EM, mean BLEU) per language present, in table order, and what was skipped.

    Raises:
        UserError: for a gold language outside the table.
    """
    official = {lang: _Sums() for lang in language_table}
    corrected = {lang: _Sums() for lang in language_table}
    missing, no_answer_skipped = [], 0
    for question in gold:
        if question.lang not in official:
            raise UserError(f"{gold_source}: line {question.line} (id {question.id!r}): language "
                            f"{question.lang!r} is not scored by the official script (it knows "
                            f"{', '.join(language_table)})")
        if skip_no_answer_gold and question.answers[0] == "No Answer":  # CORA's MKQA rule
            no_answer_skipped += 1
            continue
        prediction = find_prediction(question)
        if prediction is None:
            missing.append(question.id)
        official_scores = corrected_scores = None
        if prediction is not None:
            official_scores = official_answer_scores(prediction, question.answers, question.lang)
            # The corrected rule differs only for Japanese; elsewhere reuse the official scores (half the work).
            corrected_scores = (corrected_answer_scores(prediction, question.answers, question.lang)
                                if question.lang == "ja" else official_scores)
        official[question.lang].add(official_scores)
        corrected[question.lang].add(corrected_scores)
    return LanguageMeans(
        official={lang: (s.count, *s.means()) for lang, s in official.items() if s.count},
        corrected={lang: (s.count, *s.means()) for lang, s in corrected.items() if s.count},
        missing_ids=tuple(missing), no_answer_skipped=no_answer_skipped)


def percent_scores(means: Mapping[str, tuple[int, float, float, float]]) -> dict[str, LanguageAnswerScores]:
    """Per-language means in [0, 1] -> percentages, multiplied as the official script prints them."""
    return {lang: LanguageAnswerScores(count, f1 * 100, em * 100, bleu * 100)
            for lang, (count, f1, em, bleu) in means.items()}


def mean_over_languages(means: Mapping[str, tuple[int, float, float, float]], divisor: int | None = None
                        ) -> tuple[float | None, float | None, float | None]:
    """Averages per-language means as the official scripts do: sum in table order, divide, x 100.

    Args:
        means: per-language (count, f1, em, bleu) in [0, 1].
        divisor: what to divide by; the number of languages present when None.

    Returns:
        (F1, EM, BLEU) percentages, or Nones when there is nothing to divide by.
    """
    divisor = len(means) if divisor is None else divisor
    if divisor == 0:
        return None, None, None
    totals = [0.0, 0.0, 0.0]
    for _, f1, em, bleu in means.values():
        totals[0] += f1
        totals[1] += em
        totals[2] += bleu
    return tuple(total / divisor * 100 for total in totals)


def official_prediction_id(raw_id: str) -> str:
    """The official script keys a prediction by the part of its id after the last "_"."""
    return raw_id.split("_")[-1]


def as_answer_predictions(predictions: Mapping[str, str] | AnswerPredictions) -> AnswerPredictions:
    """Accepts a plain `{id: answer}` mapping wherever a loaded prediction file is accepted."""
    if isinstance(predictions, AnswerPredictions):
        return predictions
    return AnswerPredictions(answers=dict(predictions))


def reject_unknown_ids(prediction_ids: Sequence[str], gold_ids: set[str], source: str, gold_source: str,
                       allow_unknown_ids: bool) -> tuple[str, ...]:
    """Fails on the first prediction id absent from the gold data, unless allowed (then they are returned).

    Raises:
        UserError: naming the prediction file and the record.
    """
    unknown = tuple(i for i in prediction_ids if i not in gold_ids)
    if unknown and not allow_unknown_ids:
        more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
        raise UserError(f"{source}: record {unknown[0]!r}: id is not in {gold_source}{more}")
    return unknown


def score_xor_full(gold: Sequence[GoldQuestion], predictions: Mapping[str, str] | AnswerPredictions, *,
                   allow_unknown_ids: bool = False, gold_source: str = "gold data") -> AnswerScoreReport:
    """Computes XOR-Full F1 / EM / BLEU, official and corrected.

    Args:
        gold: the gold questions (answers in the question's language).
        predictions: `{question id: answer}` (ids may carry a prefix ending in "_", cut as officially).
        allow_unknown_ids: skip (and count) prediction ids absent from the gold instead of failing.
        gold_source: name of the gold data in messages.

    Returns:
        The report.

    Raises:
        UserError: for an unknown prediction id (unless allowed) or a gold language outside the official table.
    """
    predictions = as_answer_predictions(predictions)
    by_question: dict[str, str] = {}
    collapsed = []
    for raw_id, answer in predictions.answers.items():
        question_id = official_prediction_id(raw_id)
        if question_id in by_question:
            collapsed.append(question_id)
        by_question[question_id] = answer
    gold_ids = {q.id for q in gold}
    unknown = reject_unknown_ids(list(by_question), gold_ids, predictions.source, gold_source, allow_unknown_ids)
    means = score_gold_questions(gold, lambda q: by_question.get(q.id), XOR_FULL_LANGUAGES,
                                 gold_source=gold_source)
    f1, em, bleu = mean_over_languages(means.official, OFFICIAL_LANGUAGE_DIVISOR)
    corrected_f1, corrected_em, corrected_bleu = mean_over_languages(means.corrected)
    answered = gold_ids & set(by_question)
    coverage = Coverage(
        gold_questions=len(gold), prediction_records=predictions.records,
        matched=sum(q.id in answered for q in gold), missing_ids=means.missing_ids,
        duplicate_ids=predictions.duplicate_ids + tuple(collapsed), unknown_ids=unknown,
        duplicate_gold_ids=repeated_ids(q.id for q in gold))
    return AnswerScoreReport(
        metric="xor_full", per_language=percent_scores(means.official), f1=f1, em=em, bleu=bleu,
        corrected_per_language=percent_scores(means.corrected), corrected_f1=corrected_f1,
        corrected_em=corrected_em, corrected_bleu=corrected_bleu, coverage=coverage)


def format_official_report(report: AnswerScoreReport, language_table: Sequence[str] = XOR_FULL_LANGUAGES,
                           print_absent_languages: bool = True) -> list[str]:
    """The lines the official script prints: every table language (zeros when absent), then the averages."""
    lines = []
    for lang in language_table:
        scores = report.per_language.get(lang)
        if scores is None:
            if not print_absent_languages:
                continue
            scores = LanguageAnswerScores(0, 0, 0, 0)
        lines.append(f"Evaluating the performance on {lang}")
        lines.append(f"F1: {scores.f1}, EM:{scores.em}, BLEU:{scores.bleu}")
    for name, value in (("f1", report.f1), ("em", report.em), ("bleu", report.bleu)):
        lines.append(f"avg {name}: {'n/a (no language with questions)' if value is None else value}")
    return lines


def format_corrected_report(report: AnswerScoreReport) -> list[str]:
    """The corrected figures, clearly labelled as not official."""
    lines = ["Corrected variant (not official: Japanese gold and prediction rewritten alike, BLEU against raw "
             "gold answers, average over the languages present):"]
    for lang, s in report.corrected_per_language.items():
        lines.append(f"corrected {lang} ({s.count}): F1 {s.f1:.2f}, EM {s.em:.2f}, BLEU {s.bleu:.2f}")
    if report.corrected_f1 is not None:
        lines.append(f"corrected avg: F1 {report.corrected_f1:.2f}, EM {report.corrected_em:.2f}, "
                     f"BLEU {report.corrected_bleu:.2f}")
    return lines
