"""The records the scorers read (gold questions, predictions) and the coverage report they all produce."""

import dataclasses
from typing import Any, Iterable, Sequence

# How many example ids a coverage report shows for each kind of problem.
COVERAGE_EXAMPLES = 5


@dataclasses.dataclass(frozen=True)
class GoldQuestion:
    """One evaluation question in the XOR-TyDi format (`{"id", "question", "answers", "lang"}`).

    Attributes:
        id: question id (MKQA's integer example ids are kept as their decimal string).
        lang: language code ("ja", "zh_cn", ...).
        answers: the gold answers, in file order (never empty).
        question: the question text, when known.
        line: 1-based line of the record in its file (0 when built in memory).
    """
    id: str
    lang: str
    answers: tuple[str, ...]
    question: str = ""
    line: int = 0


@dataclasses.dataclass(frozen=True)
class RetrievalPrediction:
    """One record of an XOR-Retrieve prediction file (`{"id", "lang", "ctxs": [passage text, ...]}`).

    Attributes:
        id: question id.
        lang: the language the prediction file claims (the official scorer groups by this, not by the gold).
        passages: retrieved passage texts in rank order.
        index: 0-based position of the record in the prediction file.
    """
    id: str
    lang: str
    passages: tuple[str, ...]
    index: int = 0


@dataclasses.dataclass(frozen=True)
class MkqaPrediction:
    """One MKQA prediction in Apple's official format.

    Attributes:
        example_id: the MKQA example id, as a string.
        prediction: predicted answer text; "" means No Answer.
        binary_answer: "yes", "no" or None; when set it replaces `prediction` (official rule).
        no_answer_prob: score that the answer is No Answer, used to pick the best abstention threshold.
    """
    example_id: str
    prediction: str
    binary_answer: str | None = None
    no_answer_prob: float = 0.0

    @property
    def answer_text(self) -> str:
        """The text that is scored: the binary answer when there is one, else the prediction."""
        return self.binary_answer or self.prediction


@dataclasses.dataclass(frozen=True)
class Coverage:
    """How a prediction set lines up with the gold questions; reported beside the scores, never folded into them.

    Attributes:
        gold_questions: gold records read.
        prediction_records: prediction records read (duplicates included).
        matched: gold records that found a prediction.
        missing_ids: gold ids without a prediction (scored as the official rule says: 0, or not counted).
        duplicate_ids: prediction ids seen again after their first record (one entry per extra record).
        unknown_ids: prediction ids absent from the gold data (only when unknown ids are allowed; else an error).
        duplicate_gold_ids: gold ids repeated in the gold data.
        notes: other counted irregularities, e.g. {"language_mismatches": 3}.
    """
    gold_questions: int
    prediction_records: int
    matched: int
    missing_ids: tuple[str, ...] = ()
    duplicate_ids: tuple[str, ...] = ()
    unknown_ids: tuple[str, ...] = ()
    duplicate_gold_ids: tuple[str, ...] = ()
    notes: dict[str, int] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Counts plus the first few ids of each problem, ready for the JSON summary line."""
        result: dict[str, Any] = {
            "gold_questions": self.gold_questions,
            "prediction_records": self.prediction_records,
            "matched": self.matched,
        }
        for name in ("missing_ids", "duplicate_ids", "unknown_ids", "duplicate_gold_ids"):
            ids = getattr(self, name)
            result[name.replace("_ids", "")] = len(ids)
            if ids:
                result[f"{name}_examples"] = list(ids[:COVERAGE_EXAMPLES])
        result.update(self.notes)
        return result

    def summary_lines(self) -> list[str]:
        """Human-readable lines, one per kind of problem found (just the totals when all is well)."""
        lines = [f"coverage: {self.matched} of {self.gold_questions} gold questions have a prediction "
                 f"({self.prediction_records} prediction records read)"]
        for label, ids in (("missing predictions", self.missing_ids),
                           ("duplicate prediction ids (later records)", self.duplicate_ids),
                           ("unknown prediction ids (ignored)", self.unknown_ids),
                           ("duplicate gold ids", self.duplicate_gold_ids)):
            if ids:
                shown = ", ".join(ids[:COVERAGE_EXAMPLES]) + (", ..." if len(ids) > COVERAGE_EXAMPLES else "")
                lines.append(f"coverage: {len(ids)} {label}: {shown}")
        lines += [f"coverage: {count} {name.replace('_', ' ')}" for name, count in self.notes.items() if count]
        return lines


def merge_coverages(parts: Sequence[Coverage]) -> Coverage:
    """Adds up the coverage of several parts (e.g. the languages of MKQA), keeping every id list.

    Args:
        parts: coverage reports whose ids are already distinguishable (e.g. prefixed by language).

    Returns:
        One report over all parts.
    """
    notes: dict[str, int] = {}
    for part in parts:
        for name, count in part.notes.items():
            notes[name] = notes.get(name, 0) + count
    return Coverage(
        gold_questions=sum(p.gold_questions for p in parts),
        prediction_records=sum(p.prediction_records for p in parts),
        matched=sum(p.matched for p in parts),
        missing_ids=tuple(i for p in parts for i in p.missing_ids),
        duplicate_ids=tuple(i for p in parts for i in p.duplicate_ids),
        unknown_ids=tuple(i for p in parts for i in p.unknown_ids),
        duplicate_gold_ids=tuple(i for p in parts for i in p.duplicate_gold_ids),
        notes=notes,
    )


@dataclasses.dataclass(frozen=True)
class AnswerPredictions:
    """Answer predictions read from one file: `{question id: answer}` plus what reading it found.

    Attributes:
        answers: answer text per id; for an id given twice, the later value (as `json.load` keeps it).
        duplicate_ids: ids that occurred again after their first key (one entry per extra occurrence).
        source: where they came from, for error messages (a file path, or "predictions").
    """
    answers: dict[str, str]
    duplicate_ids: tuple[str, ...] = ()
    source: str = "predictions"

    @property
    def records(self) -> int:
        """Number of records read, duplicates included."""
        return len(self.answers) + len(self.duplicate_ids)


def repeated_ids(ids: Iterable[str]) -> tuple[str, ...]:
    """The ids that occur again after their first occurrence, one entry per extra occurrence, in order."""
    seen: set[str] = set()
    repeats = []
    for item in ids:
        if item in seen:
            repeats.append(item)
        seen.add(item)
    return tuple(repeats)
