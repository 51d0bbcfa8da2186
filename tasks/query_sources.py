"""Query-level data: readers of the question files CLASS is trained and evaluated on, as SeqIO sources.

Every reader returns `GoldQuestion`s (class_jax/evaluation/records.py: id, lang, answers, question), the record
the scorers use, and every source yields the raw features

    id        tf.string    question id
    lang      tf.string    language code
    question  tf.string    the question text
    answers   tf.string    [n] gold answers

Formats:
  XOR-TyDi (XOR-Retrieve / XOR-Full, and the demo's question sets): JSON Lines {"id", "question", "answers",
    "lang"}, read by the evaluation package's loader.
  MKQA: the original JSON Lines(.gz) file, converted per language as CLASS / CORA do (answers = text and aliases
    of every answer object; questions without answer text dropped).
  NQ-open in DPR's `nq-{train,dev}.qa.csv`: `question<TAB>python list of answers` per line; the list is parsed
    with ast.literal_eval (never eval). Ids are "nq_<split>_<line>".
  NQ-open from TFDS (`natural_questions_open`): question + answer list; ids are a stable hash of the question.

Files are read when a dataset is built, so a task can be registered before its file exists; a missing or
malformed file fails then with a UserError naming the file and line.
"""

import ast
import pathlib
from typing import Callable, Mapping, Optional, Sequence

import seqio
import tensorflow as tf

from class_jax.runtime.errors import UserError
from class_jax.evaluation import files as evaluation_files
from class_jax.evaluation import mkqa
from class_jax.evaluation.records import GoldQuestion

QuestionLoader = Callable[[], Sequence[GoldQuestion]]


def load_xor_questions(path: str | pathlib.Path) -> list[GoldQuestion]:
    """Reads an XOR-TyDi-format question file (see `class_jax.evaluation.files.load_gold_questions`).

    Raises:
      UserError: a missing file, invalid JSON, a malformed record or one without a question (with its line).
    """
    questions = evaluation_files.load_gold_questions(path)
    for question in questions:
        if not question.question.strip():
            raise UserError(f"{path}: line {question.line}: record {question.id!r} has no 'question' text")
    return questions


def load_mkqa_questions(path: str | pathlib.Path, lang: str) -> list[GoldQuestion]:
    """The MKQA questions of one language, converted as CLASS / CORA do.

    Raises:
      UserError: a bad file or record (with its line), or a language MKQA does not have.
    """
    if lang not in mkqa.MKQA_LANGUAGES:
        raise UserError(f"{lang!r} is not an MKQA language (expected one of {', '.join(mkqa.MKQA_LANGUAGES)})")
    return mkqa.convert_to_xor(mkqa.load_mkqa_records(str(path)), languages=[lang]).questions


def parse_nq_csv_line(line: str, where: str, question_id: str) -> GoldQuestion:
    """One line of DPR's NQ-open CSV: `question<TAB>['answer', ...]`.

    Raises:
      UserError: no tab, an answer list that is not a Python list literal of strings, or an empty question.
    """
    if "\t" not in line:
        raise UserError(f"{where}: expected 'question<TAB>[answers]', found no tab")
    question, answers_text = line.rsplit("\t", 1)
    try:
        answers = ast.literal_eval(answers_text.strip())
    except (ValueError, SyntaxError) as e:
        raise UserError(f"{where}: the answers {answers_text.strip()[:60]!r} are not a Python list literal "
                        f"({type(e).__name__})") from None
    if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
        raise UserError(f"{where}: the answers must be a non-empty list of strings, got {answers_text.strip()[:60]!r}")
    if not question.strip():
        raise UserError(f"{where}: empty question")
    return GoldQuestion(id=question_id, lang="en", answers=tuple(answers), question=question.strip())


def load_nq_csv(path: str | pathlib.Path, split_name: str) -> list[GoldQuestion]:
    """Reads DPR's `nq-<split>.qa.csv` (UTF-8, one question per line; blank lines are an error).

    Raises:
      UserError: a missing file or a malformed line (naming the file and line).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such NQ-open CSV file")
    questions = []
    try:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                line = line.rstrip("\n").rstrip("\r")
                questions.append(parse_nq_csv_line(line, f"{path}: line {number}", f"nq_{split_name}_{number}"))
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text ({e.reason})") from e
    if not questions:
        raise UserError(f"{path}: no questions in the file")
    return questions


def questions_dataset(questions: Sequence[GoldQuestion]) -> tf.data.Dataset:
    """A tf.data.Dataset of the raw features of the module docstring, in order."""
    return tf.data.Dataset.from_tensor_slices({
        "id": tf.constant([q.id for q in questions], tf.string),
        "lang": tf.constant([q.lang for q in questions], tf.string),
        "question": tf.constant([q.question for q in questions], tf.string),
        "answers": tf.ragged.constant([list(q.answers) for q in questions], dtype=tf.string),
    }).map(lambda ex: {**ex, "answers": tf.convert_to_tensor(ex["answers"])})


def question_file_source(split_to_loader: Mapping[str, QuestionLoader]) -> seqio.FunctionDataSource:
    """A SeqIO source reading each split with its loader (when a dataset is built)."""

    def dataset_fn(split: str, shuffle_files: bool, seed: Optional[int] = None) -> tf.data.Dataset:
        del shuffle_files, seed  # one in-memory file per split; the Task shuffles examples
        return questions_dataset(split_to_loader[split]())

    return seqio.FunctionDataSource(dataset_fn, splits=list(split_to_loader))


def _tfds_question_id(question: tf.Tensor) -> tf.Tensor:
    bucket = tf.strings.to_hash_bucket_strong(question, 2**62, key=[0x434C, 0x4153])
    return tf.strings.join(["nq_", tf.strings.as_string(bucket)])


def tfds_nq_open_source(tfds_name: str = "natural_questions_open:1.0.0",
                        tfds_data_dir: Optional[str] = None) -> seqio.TfdsDataSource:
    """NQ-open from TFDS (splits "train" and "validation")."""
    return seqio.TfdsDataSource(tfds_name=tfds_name, tfds_data_dir=tfds_data_dir)


@seqio.map_over_dataset
def tfds_nq_open_to_questions(example: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """TFDS NQ-open {question, answer} -> the raw query features."""
    return {"id": _tfds_question_id(example["question"]), "lang": tf.constant("en"),
            "question": example["question"], "answers": example["answer"]}
