"""MKQA data, and MKQA scored the way CLASS / CORA papers score it ("MKQA F1" in those papers).

CLASS / CORA rule (CORA's `convert_mkqa_to_xorqa.py` + `eval_mkqa_all.py`, reproduced):
  * Each language becomes an XOR-format question set: answers = every answer object's text (when not null)
    followed by its aliases; a question left without any answer text (long_answer, unanswerable) is dropped.
  * Each language is scored with the XOR-Full per-question rule (same normalisation, MeCab for Japanese,
    whitespace tokens everywhere else, including zh / th / km), skipping gold records whose first answer is
    "No Answer"; a question without prediction scores 0.
  * The score is the unweighted mean over the languages that have questions (26 for the full MKQA).

Apple's official MKQA metric is a different one: `class_jax.evaluation.mkqa_apple`.
"""

import dataclasses
from typing import Any, Iterable, Mapping, Sequence

from class_jax.runtime.errors import UserError
from class_jax.evaluation import files, xor_full
from class_jax.evaluation.records import Coverage, GoldQuestion, merge_coverages, repeated_ids

# The 26 MKQA languages (Apple's list and order).
MKQA_LANGUAGES = ("ar", "da", "de", "en", "es", "fi", "fr", "he", "hu", "it", "ja", "km", "ko", "ms", "nl", "no",
                  "pl", "pt", "ru", "sv", "th", "tr", "vi", "zh_cn", "zh_hk", "zh_tw")

# The language table of CORA's MKQA scorer (its XOR-Full table widened to MKQA), in its order.
CORA_MKQA_LANGUAGE_TABLE = ("te", "sw", "th", "fi", "id", "ja", "ru", "ar", "en", "bn", "ko", "es", "he", "sv", "da",
                            "de", "hu", "it", "km", "ms", "nl", "no", "pt", "tr", "vi", "fr", "pl", "zh_cn",
                            "zh_hk", "zh_tw")


# The order CORA's `eval_mkqa_all.py` visits languages in: it prints them and sums their scores in this order.
CORA_MKQA_EVAL_ORDER = ("tr", "hu", "zh_hk", "nl", "ms", "zh_cn", "ja", "de", "ru", "pl", "fi", "pt", "km", "it", "fr",
                        "he", "vi", "zh_tw", "no", "da", "th", "sv", "es", "ar", "en", "ko")

# CORA's scorer skips gold records whose first answer is this (its converter writes "NoAns" instead, so with
# default options nothing is skipped).
NO_ANSWER_GOLD = "No Answer"


@dataclasses.dataclass(frozen=True)
class MkqaAnswer:
    """One answer object of an MKQA record."""
    type: str
    text: str | None
    aliases: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class MkqaRecord:
    """One MKQA example: the query and answers in each language."""
    example_id: str
    queries: dict[str, str]
    answers: dict[str, tuple[MkqaAnswer, ...]]
    line: int = 0


def _answer_from_json(value: Any, where: str) -> MkqaAnswer:
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise UserError(f"{where}: an answer must be an object with a string 'type'")
    answer_text = value.get("text")
    aliases = value.get("aliases", [])
    if answer_text is not None and not isinstance(answer_text, str):
        raise UserError(f"{where}: answer 'text' must be a string or null, got {files.describe_value(answer_text)}")
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise UserError(f"{where}: answer 'aliases' must be a list of strings when given, got "
                        f"{files.describe_value(aliases)}")
    return MkqaAnswer(type=value["type"], text=answer_text, aliases=tuple(aliases))


def mkqa_record_from_json(record: Any, where: str, line: int = 0) -> MkqaRecord:
    """Validates one record of the original MKQA file.

    Args:
        record: the parsed JSON value.
        where: "FILE: line N" for messages.
        line: the record's line.

    Returns:
        The record.

    Raises:
        UserError: when a field is missing or malformed, the example id is not a string or an integer, or the
            languages with a query and those with answers differ.
    """
    if not isinstance(record, dict):
        raise UserError(f"{where}: expected an MKQA object with example_id, queries and answers, got a JSON "
                        f"{files.json_type_name(record)}")
    for key in ("example_id", "queries", "answers"):
        if key not in record:
            raise UserError(f"{where}: missing field {key!r}")
    example_id = record["example_id"]
    if isinstance(example_id, bool) or not isinstance(example_id, (str, int)):
        raise UserError(f"{where}: 'example_id' must be a string or an integer, got "
                        f"{files.describe_value(example_id)}")
    queries, answers = record["queries"], record["answers"]
    if not isinstance(queries, dict) or not all(isinstance(q, str) for q in queries.values()):
        raise UserError(f"{where}: 'queries' must map languages to strings, got {_describe_mapping(queries, str)}")
    if not isinstance(answers, dict) or not all(isinstance(a, list) for a in answers.values()):
        raise UserError(f"{where}: 'answers' must map languages to lists of answer objects, got "
                        f"{_describe_mapping(answers, list)}")
    for lang in queries:
        if lang not in answers:
            raise UserError(f"{where}: language {files.describe_value(lang)} has a query but no answers")
        if lang not in MKQA_LANGUAGES:
            raise UserError(f"{where}: unknown MKQA language {files.describe_value(lang)}")
    for lang in answers:
        if lang not in queries:
            # CORA's converter reads queries[lang] for every answered language; skipping it would lose the question.
            raise UserError(f"{where}: language {files.describe_value(lang)} has answers but no query")
    return MkqaRecord(
        example_id=str(example_id), queries=dict(queries),
        answers={lang: tuple(_answer_from_json(a, f"{where}: answers[{lang!r}]") for a in values)
                 for lang, values in answers.items()},
        line=line)


def _describe_mapping(value: Any, expected: type) -> str:
    """For messages: what a value that should be a JSON object of `expected` values is, or its first bad entry."""
    if not isinstance(value, dict):
        return files.describe_value(value)
    key, item = next((k, v) for k, v in value.items() if not isinstance(v, expected))
    return f"{files.describe_value(key)}: {files.describe_value(item)}"


def is_original_mkqa_file(path: str) -> bool:
    """Whether a JSON Lines file holds original MKQA records (else it is taken as XOR format)."""
    for _, record in files.iter_jsonl(path):
        return isinstance(record, dict) and "example_id" in record and "queries" in record
    raise UserError(f"{path}: the file is empty")


def load_mkqa_records(path: str) -> list[MkqaRecord]:
    """Reads the original MKQA file (JSON Lines, plain or gzip).

    Raises:
        UserError: for a missing file, invalid JSON or a malformed record.
    """
    return [mkqa_record_from_json(record, f"{path}: line {line}", line) for line, record in files.iter_jsonl(path)]


@dataclasses.dataclass(frozen=True)
class ConvertedMkqa:
    """MKQA in XOR format (CORA's conversion) and, per language, the ids of questions dropped for having no
    answer text."""
    questions: list[GoldQuestion]
    dropped_without_answer: dict[str, tuple[str, ...]]


def convert_to_xor(records: Sequence[MkqaRecord], languages: Iterable[str] | None = None) -> ConvertedMkqa:
    """Converts MKQA to XOR-format questions exactly as CORA's `convert_mkqa_to_xorqa.py` (default options).

    Args:
        records: original MKQA records.
        languages: the languages to keep; every language with a query when None.

    Returns:
        Questions grouped by language (in `MKQA_LANGUAGES` order), with id = the example id, and drop counts.
    """
    wanted = set(MKQA_LANGUAGES if languages is None else languages)
    by_language: dict[str, list[GoldQuestion]] = {lang: [] for lang in MKQA_LANGUAGES if lang in wanted}
    dropped: dict[str, list[str]] = {lang: [] for lang in by_language}
    for record in records:
        for lang, query in record.queries.items():
            if lang not in by_language:
                continue
            answers = []
            for answer in record.answers[lang]:
                if answer.text is not None:
                    answers.append(answer.text)
                answers.extend(answer.aliases)
            if answers:
                by_language[lang].append(GoldQuestion(id=record.example_id, lang=lang, answers=tuple(answers),
                                                      question=query, line=record.line))
            else:
                dropped[lang].append(record.example_id)
    return ConvertedMkqa(questions=[q for questions in by_language.values() for q in questions],
                         dropped_without_answer={lang: tuple(ids) for lang, ids in dropped.items()})


def score_mkqa_cora(gold: Sequence[GoldQuestion], predictions: Mapping[str, Mapping[str, str]], *,
                    duplicate_prediction_ids: Mapping[str, Sequence[str]] | None = None,
                    dropped_ids: Mapping[str, Sequence[str]] | None = None, allow_unknown_ids: bool = False,
                    gold_source: str = "gold data", prediction_sources: Mapping[str, str] | None = None
                    ) -> xor_full.AnswerScoreReport:
    """Scores MKQA as CLASS / CORA papers do (official) and with the corrected XOR-Full rule.

    Args:
        gold: XOR-format questions of any MKQA languages (from `convert_to_xor` or an XOR-format file).
        predictions: language -> {question id: answer}.
        duplicate_prediction_ids: language -> ids repeated in its prediction file (for the coverage report).
        dropped_ids: language -> ids of MKQA questions the conversion dropped; predictions for them are ignored
            and counted ("predictions_for_dropped_questions"), not treated as unknown.
        allow_unknown_ids: skip (and count) prediction ids absent from the gold instead of failing.
        gold_source: name of the gold data in messages.
        prediction_sources: language -> prediction file name, for messages.

    Returns:
        The report; "per_language" holds the languages with questions, in CORA's order.

    Raises:
        UserError: for an unknown prediction id or language (unless ids are allowed), or a gold language outside
            CORA's table.
    """
    prediction_sources = prediction_sources or {}
    duplicate_prediction_ids = duplicate_prediction_ids or {}
    dropped_ids = dropped_ids or {}
    gold_languages = {q.lang for q in gold}
    for lang in predictions:
        if lang not in gold_languages:
            raise UserError(f"{prediction_sources.get(lang, 'predictions')}: language {lang!r} has predictions "
                            f"but no questions in {gold_source}")
    coverages = []
    for lang in sorted(gold_languages):
        questions = [q for q in gold if q.lang == lang]
        dropped = set(dropped_ids.get(lang, ()))
        answers = {i: a for i, a in predictions.get(lang, {}).items() if i not in dropped}
        for_dropped = len(predictions.get(lang, {})) - len(answers)
        unknown = xor_full.reject_unknown_ids(list(answers), {q.id for q in questions},
                                              prediction_sources.get(lang, f"predictions[{lang!r}]"),
                                              f"{gold_source} ({lang})", allow_unknown_ids)
        duplicates = tuple(duplicate_prediction_ids.get(lang, ()))
        coverages.append(Coverage(
            gold_questions=len(questions), prediction_records=len(answers) + for_dropped + len(duplicates),
            matched=sum(q.id in answers for q in questions),
            missing_ids=tuple(f"{lang}:{q.id}" for q in questions
                              if q.id not in answers and q.answers[0] != NO_ANSWER_GOLD),
            duplicate_ids=tuple(f"{lang}:{i}" for i in duplicates),
            unknown_ids=tuple(f"{lang}:{i}" for i in unknown),
            duplicate_gold_ids=tuple(f"{lang}:{i}" for i in repeated_ids(q.id for q in questions)),
            notes={"predictions_for_dropped_questions": for_dropped}))
    means = xor_full.score_gold_questions(
        gold, lambda q: predictions.get(q.lang, {}).get(q.id), CORA_MKQA_LANGUAGE_TABLE,
        skip_no_answer_gold=True, gold_source=gold_source)
    # CORA's visiting order (then any other table language), so sums match the official script to the last bit.
    order = [*CORA_MKQA_EVAL_ORDER, *(lang for lang in CORA_MKQA_LANGUAGE_TABLE if lang not in CORA_MKQA_EVAL_ORDER)]
    official = {lang: means.official[lang] for lang in order if lang in means.official}
    corrected_means = {lang: means.corrected[lang] for lang in order if lang in means.corrected}
    f1, em, bleu = xor_full.mean_over_languages(official)
    corrected_f1, corrected_em, corrected_bleu = xor_full.mean_over_languages(corrected_means)
    coverage = merge_coverages(coverages)
    coverage = dataclasses.replace(coverage, notes={**coverage.notes,
                                                    "no_answer_gold_skipped": means.no_answer_skipped})
    return xor_full.AnswerScoreReport(
        metric="mkqa_cora", per_language=xor_full.percent_scores(official), f1=f1, em=em, bleu=bleu,
        corrected_per_language=xor_full.percent_scores(corrected_means), corrected_f1=corrected_f1,
        corrected_em=corrected_em, corrected_bleu=corrected_bleu, coverage=coverage)


def format_official_report(report: xor_full.AnswerScoreReport) -> list[str]:
    """The lines CORA's `eval_mkqa_all.py` prints (languages with questions, then average F1 and EM), plus the
    average BLEU it computes but leaves out."""
    lines = []
    for lang, scores in report.per_language.items():
        lines.append(f"Evaluating the performance on {lang} for {scores.count} examples")
        lines.append(f"F1: {scores.f1}, EM:{scores.em}, BLEU:{scores.bleu}")
    for name, value in (("f1", report.f1), ("em", report.em), ("bleu", report.bleu)):
        lines.append(f"avg {name}: {'n/a (no language with questions)' if value is None else value}")
    return lines
