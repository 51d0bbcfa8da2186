"""SeqIO preprocessors: raw query / FiD records -> the token features of the CLASS model.

Token formats come from `class_jax.tasks.text_inputs` (the same functions the passage index uses), so a
passage tokenised for training is bit-identical to the one the index encoded:

    query_tokens          `question: {q}`, at most Lq tokens, no EOS                      int32 [<= Lq]
    english_query_tokens  the same for the parallel English cloze (stage 1)                 int32 [<= Lq]
    passage_tokens        `title: {t} context: {c}` cut to Lp - 1, then EOS, per slot      int32 [k, Lp]
                          (empty slots, and slots past the task's k, are all-zero rows)
    teacher_scores        the teacher's score of each slot (stage 1), 0 in empty slots     float32 [k]
    targets               the answer tokens; `seqio.preprocessors.append_eos_after_trim` then cuts them to
                          La - 1 and appends EOS                                           int32 [<= La]

Stage 1 with a neural teacher (the task has a teacher vocabulary) adds the teacher's inputs, tokenised with the
teacher's vocabulary from exactly the texts of the student's features:

    teacher_query_tokens    the English cloze as english_query_tokens (`question: {q}`, no EOS)  int32 [<= Lq_t]
    teacher_passage_tokens  the passages as passage_tokens (cut to Lp_t - 1, then EOS; the same
                            empty slots)                                                     int32 [k, Lp_t]
    teacher_targets         the answer as targets (EOS appended after the cut to La_t - 1)     int32 [<= La_t]

Lengths come from the task's `sequence_length`: Lq = sequence_length["query_tokens"], (k, Lp) =
sequence_length["passage_tokens"], La = sequence_length["targets"], and likewise Lq_t, (k, Lp_t) and La_t under
the teacher features' names (their k must be the passages' k); without one (inspecting a task), the paper's
50 / 200 / 50 and the file's own k apply. Raw string fields (id, lang, question, answers, passage texts, ...) are
kept for the metrics and passed over by the feature converter.
"""

from typing import Any, Mapping, Optional

import seqio
import tensorflow as tf

from class_jax.tasks import text_inputs

ANSWER_MAX_LENGTH = 50
# The stage-1 features in the neural teacher's vocabulary (see the module docstring).
TEACHER_FEATURES = ("teacher_query_tokens", "teacher_passage_tokens", "teacher_targets")


def _query_length(sequence_length: Optional[Mapping[str, Any]], name: str = "query_tokens") -> int:
    if sequence_length and sequence_length.get(name) is not None:
        return int(sequence_length[name])
    return text_inputs.QUERY_MAX_LENGTH


def passage_shape(sequence_length: Optional[Mapping[str, Any]],
                  name: str = "passage_tokens") -> tuple[Optional[int], int]:
    """(k, Lp) from `sequence_length[name]`; k is None (keep the file's) without one.

    Raises:
      ValueError: the length is not a (num_passages, passage_length) pair.
    """
    if not sequence_length or sequence_length.get(name) is None:
        return None, text_inputs.PASSAGE_MAX_LENGTH
    value = sequence_length[name]
    if isinstance(value, int) or len(value) != 2:
        raise ValueError(f"sequence length of {name!r} must be (num_passages, passage_length), e.g. "
                         f"(100, 200); got {value!r}")
    return int(value[0]), int(value[1])


def _fit_slots(values: tf.Tensor, num_slots: Optional[int], pad_value: Any) -> tf.Tensor:
    """Cuts or pads the first axis of `values` to `num_slots` (unchanged when None)."""
    if num_slots is None:
        return values
    values = values[:num_slots]
    padding = [[0, num_slots - tf.shape(values)[0]]] + [[0, 0]] * (len(values.shape) - 1)
    return tf.pad(values, padding, constant_values=pad_value)


def _answer_tokens(vocabulary: seqio.Vocabulary, answer: tf.Tensor) -> tf.Tensor:
    return tf.cast(vocabulary.encode_tf(answer), tf.int32)


def _first_or_empty(strings: tf.Tensor) -> tf.Tensor:
    return tf.cond(tf.size(strings) > 0, lambda: strings[0], lambda: tf.constant(""))


@seqio.map_over_dataset
def query_inputs(example: Mapping[str, tf.Tensor], output_features: Mapping[str, seqio.Feature],
                 sequence_length: Optional[Mapping[str, Any]] = None,
                 normalize_queries: bool = False) -> dict[str, tf.Tensor]:
    """Query-level record {id, lang, question, answers} -> + query_tokens, targets (the first answer).

    `normalize_queries` applies the release's query normalisation (`text_inputs.normalize_query`) first.
    """
    vocabulary = output_features["query_tokens"].vocabulary
    answer = _first_or_empty(example["answers"])
    out = dict(example)
    out["query_tokens"] = text_inputs.query_ids_tf(vocabulary, example["question"], _query_length(sequence_length),
                                                   normalize_queries)
    out["targets_pretokenized"] = answer
    out["targets"] = _answer_tokens(output_features["targets"].vocabulary, answer)
    return out


def _passage_tokens(vocabulary: seqio.Vocabulary, example: Mapping[str, tf.Tensor], num_slots: Optional[int],
                    passage_length: int, drop_source_passage: bool) -> tf.Tensor:
    """[k, Lp] passage ids; the slots beyond `num_passages` (and the query's own source passage) are zero rows."""
    titles, texts = example["passage_titles"], example["passage_texts"]
    if num_slots is not None:
        titles, texts = titles[:num_slots], texts[:num_slots]
    keep = tf.range(tf.shape(titles)[0]) < tf.cast(example["num_passages"], tf.int32)
    if drop_source_passage:
        ids = example["passage_ids"][:tf.shape(titles)[0]]
        keep &= tf.logical_or(tf.equal(example["source_passage_id"], ""),
                              tf.not_equal(ids, example["source_passage_id"]))

    def one_passage(title_and_text: tuple[tf.Tensor, tf.Tensor]) -> tf.Tensor:
        return text_inputs.passage_ids_tf(vocabulary, title_and_text[0], title_and_text[1], passage_length)

    ragged = tf.map_fn(one_passage, (titles, texts),
                       fn_output_signature=tf.RaggedTensorSpec(shape=[None], dtype=tf.int32, ragged_rank=0))
    dense = ragged.to_tensor(default_value=0, shape=[None, passage_length])
    dense = tf.where(keep[:, tf.newaxis], dense, tf.zeros_like(dense))
    return _fit_slots(dense, num_slots, 0)


def fid_inputs(dataset: tf.data.Dataset, output_features: Mapping[str, seqio.Feature],
               sequence_length: Optional[Mapping[str, Any]] = None, *, answer_source: str = "target",
               with_english_query: bool = False, with_teacher_scores: bool = False,
               drop_source_passage: bool = False, normalize_queries: bool = False,
               with_teacher_inputs: bool = False) -> tf.data.Dataset:
    """FiD record (see tasks/fid_files.py) -> query_tokens, passage_tokens, targets (+ stage-1 features).

    Args:
      dataset: parsed FiD records.
      output_features: the task's features (their vocabularies are used).
      sequence_length: the task's lengths (see the module docstring).
      answer_source: "target" (train on the record's target) or "first_answer" (evaluation: answers[0], or
        the target when there are no answers).
      with_english_query: also produce english_query_tokens (stage 1).
      with_teacher_scores: also produce teacher_scores (stage 1).
      drop_source_passage: blank the slot holding the query's own source passage (MLQA-PT, as the paper's
        refresh drops it).
      normalize_queries: normalise `question` as the release does (`text_inputs.normalize_query`) before
        tokenising it. The parallel English cloze is left as it is: the release normalises non-English queries.
        The teacher's query is the English cloze, so it is left as it is too.
      with_teacher_inputs: also produce teacher_query_tokens, teacher_passage_tokens and teacher_targets with
        the vocabulary of the output features of those names (stage 1 with a neural teacher; needs
        `with_english_query`).

    Returns:
      The mapped dataset.

    Raises:
      ValueError: an unknown answer source, teacher inputs without the English query or without their output
        features, or a teacher passage count other than the passages'.
    """
    if answer_source not in ("target", "first_answer"):
        raise ValueError(f"answer_source must be 'target' or 'first_answer', got {answer_source!r}")
    vocabulary = output_features["query_tokens"].vocabulary
    num_slots, passage_length = passage_shape(sequence_length)
    if with_teacher_inputs:
        if not with_english_query:
            raise ValueError("with_teacher_inputs needs with_english_query (the teacher reads the English cloze)")
        missing = [name for name in TEACHER_FEATURES if name not in output_features]
        if missing:
            raise ValueError(f"with_teacher_inputs: the task has no output features {missing} (give it a teacher "
                             f"vocabulary)")
        teacher_vocabulary = output_features["teacher_query_tokens"].vocabulary
        teacher_slots, teacher_passage_length = passage_shape(sequence_length, "teacher_passage_tokens")
        if teacher_slots is not None and teacher_slots != num_slots:
            raise ValueError(f"sequence length of 'teacher_passage_tokens' has {teacher_slots} passages, "
                             f"'passage_tokens' {num_slots}; the teacher reads the same passages")

    def english_query_ids(example: Mapping[str, tf.Tensor], query_vocabulary: seqio.Vocabulary,
                          name: str) -> tf.Tensor:
        # The one English query text of the student's and the teacher's features (not normalised, see above).
        return text_inputs.query_ids_tf(query_vocabulary, example["english_question"],
                                        _query_length(sequence_length, name))

    def convert(example: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        out = dict(example)
        if num_slots is not None:  # raw passage fields follow the slots the task keeps (the metrics read them)
            for name in ("passage_ids", "passage_titles", "passage_texts", "passage_scores", "teacher_scores"):
                out[name] = example[name][:num_slots]
            out["num_passages"] = tf.minimum(example["num_passages"], num_slots)
        if answer_source == "target":
            answer = example["target"]
        else:
            answer = tf.cond(tf.size(example["answers"]) > 0, lambda: example["answers"][0],
                             lambda: example["target"])
        out["query_tokens"] = text_inputs.query_ids_tf(vocabulary, example["question"],
                                                       _query_length(sequence_length), normalize_queries)
        out["passage_tokens"] = _passage_tokens(vocabulary, example, num_slots, passage_length,
                                                drop_source_passage)
        out["targets_pretokenized"] = answer
        out["targets"] = _answer_tokens(output_features["targets"].vocabulary, answer)
        if with_english_query:
            out["english_query_tokens"] = english_query_ids(example, vocabulary, "english_query_tokens")
        if with_teacher_inputs:
            out["teacher_query_tokens"] = english_query_ids(example, teacher_vocabulary, "teacher_query_tokens")
            out["teacher_passage_tokens"] = _passage_tokens(teacher_vocabulary, example, num_slots,
                                                            teacher_passage_length, drop_source_passage)
            out["teacher_targets"] = _answer_tokens(output_features["teacher_targets"].vocabulary, answer)
        if with_teacher_scores:
            real = tf.range(tf.shape(example["teacher_scores"])[0]) < tf.cast(example["num_passages"], tf.int32)
            scores = tf.where(real, example["teacher_scores"], 0.0)
            out["teacher_scores"] = _fit_slots(scores, num_slots, 0.0)
        return out

    return dataset.map(convert, num_parallel_calls=tf.data.AUTOTUNE)
