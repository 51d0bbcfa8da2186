"""The FiD feature converter: task features -> the batch features of `CLASSModel` (class_jax/models/class_model.py).

Task features (from tasks/preprocessors.py) and their lengths, as a T5X `TASK_FEATURE_LENGTHS`:

    {"query_tokens": Lq, "passage_tokens": (k, Lp), "targets": La}                      stage 2, fine-tuning, eval
    + {"english_query_tokens": Lq, "teacher_scores": k}                                  stage 1 (CLR-PT)

e.g. the paper's {"query_tokens": 50, "passage_tokens": (100, 200), "targets": 50}. Model features:

    query_tokens          int32 [Lq]        0-padded
    passage_tokens        int32 [k, Lp]     0-padded; an all-zero row is an empty slot
    decoder_input_tokens  int32 [La]        targets shifted right (starts with 0)
    decoder_target_tokens int32 [La]        targets (EOS-terminated), 0-padded
    decoder_loss_weights  int32 [La]        1 on target tokens
    english_query_tokens  int32 [Lq]        stage 1
    teacher_scores        float32 [k]       stage 1

Which set applies follows from the lengths given: with "english_query_tokens" and "teacher_scores" the stage-1
converter runs (the delegation seqio's own DecoderFeatureConverter uses). FiD examples are not packable.
"""

from typing import Any, Mapping

import seqio
import tensorflow as tf

Spec = seqio.FeatureConverter.FeatureSpec
STAGE1_FEATURES = ("english_query_tokens", "teacher_scores")


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
        passage = lengths.get("passage_tokens")
        if isinstance(passage, int) or passage is None or len(passage) != 2:
            raise ValueError(f"task_feature_lengths['passage_tokens'] must be (num_passages, passage_length), "
                             f"e.g. (100, 200); got {passage!r}")
        num_passages, passage_length = int(passage[0]), int(passage[1])
        if type(self) is FiDFeatureConverter and any(name in lengths for name in STAGE1_FEATURES):
            stage1 = ClrPtFeatureConverter(apply_length_check=self._apply_length_check, bos_id=self._bos_id)
            return stage1(ds, task_feature_lengths)
        if "teacher_scores" in lengths and lengths["teacher_scores"] != num_passages:
            raise ValueError(f"task_feature_lengths['teacher_scores'] ({lengths['teacher_scores']}) must equal the "
                             f"number of passages ({num_passages})")
        # seqio's base __call__ validates ints per feature (Lp for the passages); k reaches _convert_features
        # through the instance, read when tf.data traces the map inside this call.
        self._num_passages = num_passages
        lengths["passage_tokens"] = passage_length
        return super().__call__(ds, lengths)

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
        return out

    def _convert_features(self, ds: tf.data.Dataset, task_feature_lengths: Mapping[str, int]) -> tf.data.Dataset:
        return ds.map(lambda features: self._convert_example(features, task_feature_lengths),
                      num_parallel_calls=tf.data.AUTOTUNE)

    def get_model_feature_lengths(self, task_feature_lengths: Mapping[str, int]) -> dict[str, int]:
        """Model feature -> length along its sequence axis (passages: Lp; teacher scores: k)."""
        passage = task_feature_lengths["passage_tokens"]
        passage_length = passage if isinstance(passage, int) else passage[1]
        lengths = {"query_tokens": task_feature_lengths["query_tokens"], "passage_tokens": passage_length,
                   "decoder_input_tokens": task_feature_lengths["targets"],
                   "decoder_target_tokens": task_feature_lengths["targets"],
                   "decoder_loss_weights": task_feature_lengths["targets"]}
        if "english_query_tokens" in self.TASK_FEATURES:
            lengths["english_query_tokens"] = task_feature_lengths["english_query_tokens"]
            lengths["teacher_scores"] = task_feature_lengths["teacher_scores"]
        return lengths


class ClrPtFeatureConverter(FiDFeatureConverter):
    """Stage 1: FiD features plus the parallel English query and the teacher's passage scores."""

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
