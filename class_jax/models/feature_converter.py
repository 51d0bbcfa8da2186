"""The FiD feature converter: task features -> the batch features of `CLASSModel` (class_jax/models/class_model.py).

Task features (from tasks/preprocessors.py) and their lengths, as a T5X `TASK_FEATURE_LENGTHS`:

    {"query_tokens": Lq, "passage_tokens": (k, Lp), "targets": La}                      stage 2, fine-tuning, eval
    + {"english_query_tokens": Lq, "teacher_scores": k}                                  stage 1 (CLR-PT)
    + {"teacher_query_tokens": Lq_t, "teacher_passage_tokens": (k, Lp_t),
       "teacher_targets": La_t}                                                          stage 1, neural teacher

e.g. the paper's {"query_tokens": 50, "passage_tokens": (100, 200), "targets": 50}. Model features:

    query_tokens          int32 [Lq]        0-padded
    passage_tokens        int32 [k, Lp]     0-padded; an all-zero row is an empty slot
    decoder_input_tokens  int32 [La]        targets shifted right (starts with 0)
    decoder_target_tokens int32 [La]        targets (EOS-terminated), 0-padded
    decoder_loss_weights  int32 [La]        1 on target tokens
    english_query_tokens  int32 [Lq]        stage 1
    teacher_scores        float32 [k]       stage 1 (0 where the FiD files have none)
    teacher_query_tokens          int32 [Lq_t]     stage 1, neural teacher: the English query in the teacher's
                                                   vocabulary, 0-padded
    teacher_passage_tokens        int32 [k, Lp_t]  stage 1, neural teacher: the same k passages (and empty slots)
                                                   in the teacher's vocabulary, 0-padded
    teacher_decoder_input_tokens  int32 [La_t]     stage 1, neural teacher: the answer in the teacher's
                                                   vocabulary, shifted right (starts with 0)

Which set applies follows from the lengths given: with "english_query_tokens" and "teacher_scores" the stage-1
converter runs (the delegation seqio's own DecoderFeatureConverter uses); it adds the neural teacher's features
when the lengths name all three of them (some but not all is an error). FiD examples are not packable.
"""

from typing import Any, Mapping

import seqio
import tensorflow as tf

Spec = seqio.FeatureConverter.FeatureSpec
STAGE1_FEATURES = ("english_query_tokens", "teacher_scores")
# The neural teacher's task features (tasks/preprocessors.py), all or none.
TEACHER_FEATURES = ("teacher_query_tokens", "teacher_passage_tokens", "teacher_targets")
TEACHER_TASK_FEATURES = {
    "teacher_query_tokens": Spec(dtype=tf.int32),
    "teacher_passage_tokens": Spec(dtype=tf.int32, rank=2, sequence_dim=1),
    "teacher_targets": Spec(dtype=tf.int32),
}
TEACHER_MODEL_FEATURES = {
    "teacher_query_tokens": Spec(dtype=tf.int32),
    "teacher_passage_tokens": Spec(dtype=tf.int32, rank=2, sequence_dim=1),
    "teacher_decoder_input_tokens": Spec(dtype=tf.int32),
}


def _passage_pair(lengths: Mapping[str, Any], name: str) -> tuple[int, int]:
    """(k, Lp) of a passage feature's length.

    Raises:
      ValueError: it is not a (num_passages, passage_length) pair.
    """
    value = lengths.get(name)
    if isinstance(value, int) or value is None or len(value) != 2:
        raise ValueError(f"task_feature_lengths[{name!r}] must be (num_passages, passage_length), "
                         f"e.g. (100, 200); got {value!r}")
    return int(value[0]), int(value[1])


def teacher_lengths(task_feature_lengths: Mapping[str, Any]) -> bool:
    """Whether the lengths name the neural teacher's features (all three, with the passages' k).

    Raises:
      ValueError: some but not all of them, or a teacher passage count other than the passages' (names the
        feature).
    """
    present = [name for name in TEACHER_FEATURES if name in task_feature_lengths]
    if not present:
        return False
    missing = [name for name in TEACHER_FEATURES if name not in task_feature_lengths]
    if missing:
        raise ValueError(f"task_feature_lengths give {present} but not {missing}: the neural teacher's features "
                         f"{list(TEACHER_FEATURES)} come together")
    passage = task_feature_lengths.get("passage_tokens")
    if isinstance(passage, int) and isinstance(task_feature_lengths["teacher_passage_tokens"], int):
        return True  # passage lengths only (inside FiDFeatureConverter.__call__, after the k were checked)
    teacher_k, _ = _passage_pair(task_feature_lengths, "teacher_passage_tokens")
    num_passages = None if isinstance(passage, int) or passage is None else int(passage[0])
    if teacher_k != num_passages:
        raise ValueError(f"task_feature_lengths['teacher_passage_tokens'] has {teacher_k} passages but "
                         f"'passage_tokens' {num_passages}: the teacher reads the same k passages")
    return True


def _pad_to(values: tf.Tensor, length: int) -> tf.Tensor:
    """Cuts or 0-pads the first axis of `values` to `length` (static shape set)."""
    values = values[:length]
    padded = tf.pad(values, [[0, length - tf.shape(values)[0]]] + [[0, 0]] * (len(values.shape) - 1))
    return tf.ensure_shape(padded, [length] + values.shape.as_list()[1:])


class FiDFeatureConverter(seqio.FeatureConverter):
    """Fusion-in-Decoder features for CLASSModel (query and passages apart, decoder features as in T5)."""

    TASK_FEATURES = {
        "query_tokens": Spec(dtype=tf.int32),
        "passage_tokens": Spec(dtype=tf.int32, rank=2, sequence_dim=1),
        "targets": Spec(dtype=tf.int32),
    }
    MODEL_FEATURES = {
        "query_tokens": Spec(dtype=tf.int32),
        "passage_tokens": Spec(dtype=tf.int32, rank=2, sequence_dim=1),
        "decoder_input_tokens": Spec(dtype=tf.int32),
        "decoder_target_tokens": Spec(dtype=tf.int32),
        "decoder_loss_weights": Spec(dtype=tf.int32),
    }
    PACKING_FEATURE_DTYPES = None

    def __init__(self, pack: bool = False, **kwargs: Any):
        """Builds the converter.

        Args:
          pack: must be False (a FiD example is a query with its passages; nothing to pack).
          **kwargs: seqio.FeatureConverter options (apply_length_check, bos_id).

        Raises:
          ValueError: pack=True.
        """
        if pack:
            raise ValueError("FiD examples cannot be packed; use pack=False")
        super().__init__(pack=False, **kwargs)
        self._num_passages = 0

    def __call__(self, ds: tf.data.Dataset, task_feature_lengths: Mapping[str, Any]) -> tf.data.Dataset:
        """Converts `ds`; `task_feature_lengths["passage_tokens"]` is (k, Lp).

        Raises:
          ValueError: malformed lengths (names the feature).
        """
        lengths = dict(task_feature_lengths)
        num_passages, passage_length = _passage_pair(lengths, "passage_tokens")
        if type(self) is FiDFeatureConverter and _is_stage1(lengths):
            stage1 = ClrPtFeatureConverter(apply_length_check=self._apply_length_check, bos_id=self._bos_id)
            return stage1(ds, task_feature_lengths)
        if "teacher_scores" in lengths and lengths["teacher_scores"] != num_passages:
            raise ValueError(f"task_feature_lengths['teacher_scores'] ({lengths['teacher_scores']}) must equal the "
                             f"number of passages ({num_passages})")
        self._prepare(lengths)
        # seqio's base __call__ validates ints per feature (Lp for the passages); k reaches _convert_features
        # through the instance, read when tf.data traces the map inside this call.
        self._num_passages = num_passages
        lengths["passage_tokens"] = passage_length
        if "teacher_passage_tokens" in lengths:
            lengths["teacher_passage_tokens"] = _passage_pair(lengths, "teacher_passage_tokens")[1]
        return super().__call__(ds, lengths)

    def _prepare(self, task_feature_lengths: Mapping[str, Any]) -> None:
        """Sets up the instance for one conversion with these lengths (validated; FiD: nothing to do)."""

    def _convert_example(self, features: Mapping[str, tf.Tensor], lengths: Mapping[str, int]) -> dict[str, tf.Tensor]:
        targets = _pad_to(features["targets"], lengths["targets"])
        passages = _pad_to(features["passage_tokens"], self._num_passages)
        passages = tf.pad(passages, [[0, 0], [0, lengths["passage_tokens"] - tf.shape(passages)[1]]])
        out = {
            "query_tokens": _pad_to(features["query_tokens"], lengths["query_tokens"]),
            "passage_tokens": tf.ensure_shape(passages, [self._num_passages, lengths["passage_tokens"]]),
            "decoder_target_tokens": targets,
            "decoder_input_tokens": seqio.utils.make_autoregressive_inputs(targets, bos_id=self.bos_id),
            "decoder_loss_weights": seqio.feature_converters.non_padding_position(targets),
        }
        if "english_query_tokens" in self.TASK_FEATURES:
            out["english_query_tokens"] = _pad_to(features["english_query_tokens"], lengths["english_query_tokens"])
            out["teacher_scores"] = _pad_to(tf.cast(features["teacher_scores"], tf.float32), self._num_passages)
        if "teacher_targets" in lengths:
            out["teacher_query_tokens"] = _pad_to(features["teacher_query_tokens"], lengths["teacher_query_tokens"])
            teacher_passages = _pad_to(features["teacher_passage_tokens"], self._num_passages)
            teacher_passage_length = lengths["teacher_passage_tokens"]
            teacher_passages = tf.pad(teacher_passages,
                                      [[0, 0], [0, teacher_passage_length - tf.shape(teacher_passages)[1]]])
            out["teacher_passage_tokens"] = tf.ensure_shape(teacher_passages,
                                                            [self._num_passages, teacher_passage_length])
            teacher_targets = _pad_to(features["teacher_targets"], lengths["teacher_targets"])
            out["teacher_decoder_input_tokens"] = seqio.utils.make_autoregressive_inputs(teacher_targets,
                                                                                        bos_id=self.bos_id)
        return out

    def _convert_features(self, ds: tf.data.Dataset, task_feature_lengths: Mapping[str, int]) -> tf.data.Dataset:
        return ds.map(lambda features: self._convert_example(features, task_feature_lengths),
                      num_parallel_calls=tf.data.AUTOTUNE)

    def get_model_feature_lengths(self, task_feature_lengths: Mapping[str, int]) -> dict[str, int]:
        """Model feature -> length along its sequence axis (passages: Lp; teacher scores: k).

        Stage-1 lengths give the stage-1 model features also when asked of the plain FiD converter (as `__call__`
        delegates), e.g. for the trainer's memory estimate.

        Raises:
          ValueError: malformed neural-teacher lengths (see `teacher_lengths`).
        """
        if type(self) is FiDFeatureConverter and _is_stage1(task_feature_lengths):
            return ClrPtFeatureConverter().get_model_feature_lengths(task_feature_lengths)
        passage = task_feature_lengths["passage_tokens"]
        passage_length = passage if isinstance(passage, int) else passage[1]
        lengths = {"query_tokens": task_feature_lengths["query_tokens"], "passage_tokens": passage_length,
                   "decoder_input_tokens": task_feature_lengths["targets"],
                   "decoder_target_tokens": task_feature_lengths["targets"],
                   "decoder_loss_weights": task_feature_lengths["targets"]}
        if "english_query_tokens" in self.TASK_FEATURES:
            lengths["english_query_tokens"] = task_feature_lengths["english_query_tokens"]
            lengths["teacher_scores"] = task_feature_lengths["teacher_scores"]
            if teacher_lengths(task_feature_lengths):
                teacher_passage = task_feature_lengths["teacher_passage_tokens"]
                lengths["teacher_query_tokens"] = task_feature_lengths["teacher_query_tokens"]
                lengths["teacher_passage_tokens"] = (teacher_passage if isinstance(teacher_passage, int)
                                                     else teacher_passage[1])
                lengths["teacher_decoder_input_tokens"] = task_feature_lengths["teacher_targets"]
        return lengths


def _is_stage1(task_feature_lengths: Mapping[str, Any]) -> bool:
    """Whether the lengths are stage 1's (name a stage-1 or a neural-teacher feature)."""
    return any(name in task_feature_lengths for name in STAGE1_FEATURES + TEACHER_FEATURES)


class ClrPtFeatureConverter(FiDFeatureConverter):
    """Stage 1: FiD features plus the parallel English query and the teacher's passage scores.

    With the neural teacher's lengths (`teacher_lengths`), it also passes through teacher_query_tokens and
    teacher_passage_tokens and turns teacher_targets into teacher_decoder_input_tokens: for that conversion the
    instance's TASK_FEATURES / MODEL_FEATURES (what seqio validates against) include them; the class attributes
    stay those without a teacher.
    """

    TASK_FEATURES = {
        **FiDFeatureConverter.TASK_FEATURES,
        "english_query_tokens": Spec(dtype=tf.int32),
        "teacher_scores": Spec(dtype=tf.float32),
    }
    MODEL_FEATURES = {
        **FiDFeatureConverter.MODEL_FEATURES,
        "english_query_tokens": Spec(dtype=tf.int32),
        "teacher_scores": Spec(dtype=tf.float32),
    }

    def _prepare(self, task_feature_lengths: Mapping[str, Any]) -> None:
        """Adds the neural teacher's features to this instance's feature sets when the lengths name them."""
        with_teacher = teacher_lengths(task_feature_lengths)
        cls = type(self)
        self.TASK_FEATURES = {**cls.TASK_FEATURES, **(TEACHER_TASK_FEATURES if with_teacher else {})}
        self.MODEL_FEATURES = {**cls.MODEL_FEATURES, **(TEACHER_MODEL_FEATURES if with_teacher else {})}
