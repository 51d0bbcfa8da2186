"""CLASSModel: the BaseModel the trainer drives — FiD reader + retriever, their losses, decoding, FLOPs.

Batch features (all int32 unless said otherwise):
  query_tokens           [B, Lq]      the (target-language) question, `question: {q}`, no EOS, 0-padded.
  passage_tokens         [B, k, Lp]   `title: {t} context: {c}` + EOS per passage; an all-zero row is an empty slot.
  decoder_input_tokens   [B, La]      answer shifted right (starts with 0).
  decoder_target_tokens  [B, La]      answer + EOS.
  decoder_loss_weights   [B, La]      1 on target tokens.
Stage 1 (CLR-PT) adds:
  english_query_tokens   [B, Lq]      the parallel English cloze.
  teacher_scores         [B, k] float (own passages only, BM25 from the FiD files: see
                         LossConfig.unscored_passages) or [B, B*k] float (every query against every passage of the
                         global batch: a neural teacher's, filled in by the train step, models/teacher.py).
  teacher_reader_distribution
                         [B, k] float (a neural teacher's decoder passage distribution, filled in by the train
                         step; without it the BM25 teacher's own-passage distribution stands in).
Stage 1 with a neural teacher (task feature lengths name the teacher's; tasks/fid_tasks.py teacher_vocab_path) adds,
in the teacher's vocabulary (e.g. T5's English one for ReAtt), from the same texts as the student's features:
  teacher_query_tokens          [B, Lq_t]     the English cloze, `question: {q}`, no EOS, 0-padded.
  teacher_passage_tokens        [B, k, Lp_t]  the same k passages + EOS; the same all-zero empty slots.
  teacher_decoder_input_tokens  [B, La_t]     the answer shifted right (starts with 0).
"""

import dataclasses
from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp

from class_jax.models import clr_pt
from class_jax.models import decoding
from class_jax.models import losses
from class_jax.models import retrievers
from class_jax.models.base import BaseModel
from class_jax.models.config import ModelConfig
from class_jax.models.network import Transformer
from class_jax.runtime import stages

Array = jax.Array
PyTree = Any


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Which loss terms are on and how they are weighted.

    Attributes:
      stage: the training stage (class_jax/runtime/stages.py; a name is parsed into a Stage): "mlqa_pt" or
        "finetune" (stages 2 and 3: CE + alpha * KL(reader target ‖ retriever)) or "clr_pt" (stage 1, the
        release's loss over a doubled batch of English and target-language chunks: class_jax/models/clr_pt.py).
        The old "reader" still reads, as "finetune", with a FutureWarning.
      alpha: weight of the retrieval KL terms (8 in the paper).
      ce_weight: weight of the answer cross-entropy.
      label_smoothing: of the answer cross-entropy.
      teacher_temperature: stage 1: softmax temperature applied to teacher scores (1 in the release).
      kl_teacher_en / kl_teacher_xx / kl_en_xx: stage-1 retrieval terms, each switchable.
      decoder_teacher_kl: stage 1: KL(teacher's decoder passage distribution ‖ student reader's) per chunk (the
        distribution stage 2 takes its retrieval target from). A neural teacher gives its decoder's distribution;
        the BM25 teacher its retrieval distribution over the query's own k passages, at `teacher_temperature`.
      decoder_teacher_weight: its weight (1 in the release).
      answer_alignment_kl: stage 1: KL(sg(P_en(answer)) ‖ P_xx(answer)) per answer token of each target-language
        chunk.
      answer_alignment_weight: its weight (1 in the release).
      unscored_passages: stage 1 with teacher scores of each query's own k passages only ([B, k], BM25): what the
        other queries' passages are to it. "negatives" (default): they stay in the students' softmax with zero
        teacher probability — the global-batch loss of the paper under a top-k teacher, which ranks everything
        outside its k below them — except exact copies of the query's own passages, which are left out.
        "ignore": every KL is taken over the query's own k passages only, which leaves the students no negatives
        (a retriever trained from scratch this way does not learn to separate relevant from irrelevant passages).
    """

    stage: stages.Stage = stages.Stage.FINETUNE
    alpha: float = 8.0
    ce_weight: float = 1.0
    label_smoothing: float = 0.0
    teacher_temperature: float = 1.0
    kl_teacher_en: bool = True
    kl_teacher_xx: bool = True
    kl_en_xx: bool = True
    decoder_teacher_kl: bool = True
    decoder_teacher_weight: float = 1.0
    answer_alignment_kl: bool = True
    answer_alignment_weight: float = 1.0
    unscored_passages: str = "negatives"

    def __post_init__(self):
        object.__setattr__(self, "stage", stages.parse(self.stage, allowed=stages.TRAINING_STAGES,
                                                       what="LossConfig.stage"))


class CLASSModel(BaseModel):
    """One mT5 that retrieves (first B encoder layers) and reads (FiD), trained as in CLASS."""

    def __init__(self, config: ModelConfig, loss_config: LossConfig = LossConfig(),
                 max_decode_length: int = 50, num_beams: int = 1, eos_id: int = 1, token_chunk_size: int = 256):
        """Builds the model.

        Args:
          config: network hyper-parameters.
          loss_config: loss terms.
          max_decode_length: answers are at most this many tokens.
          num_beams: 1 = greedy decoding, more = beam search.
          eos_id: end-of-sequence id of the vocabulary.
          token_chunk_size: token (ReAtt) mode: passages scored per chunk (bounds memory).
        """
        config.validate()
        self.config = config
        self.loss_config = loss_config
        self.module = Transformer(config)
        self.max_decode_length = max_decode_length
        self.num_beams = num_beams
        self.eos_id = eos_id
        self.token_chunk_size = token_chunk_size

    def with_config(self, config: ModelConfig) -> "CLASSModel":
        """The same model (losses, decoding settings) over another ModelConfig with the same parameter layout."""
        return CLASSModel(config, self.loss_config, self.max_decode_length, self.num_beams, self.eos_id,
                          self.token_chunk_size)

    @property
    def FEATURE_CONVERTER_CLS(self) -> type:  # pylint: disable=invalid-name  (T5X's name for it)
        """The SeqIO converter of task features into this model's batch; imported on use (it pulls in TensorFlow)."""
        from class_jax.models import feature_converter  # pylint: disable=import-outside-toplevel
        return feature_converter.FiDFeatureConverter

    # ----------------------------------------------------------------------------------------------- init
    @staticmethod
    def init_shapes() -> dict[str, tuple[int, ...]]:
        """The smallest input shapes for `get_initial_variables` when only the parameters are wanted.

        No parameter has a batch, passage-count or sequence-length dimension (their shapes follow from the
        ModelConfig alone) and Flax draws each parameter from the rng by its path, so these give the same
        parameters, shapes and values, as the training shapes do, at next to no tracing or initialisation cost.

        Returns:
          A fresh dict: query_tokens [1, 4], passage_tokens [1, 1, 4], decoder_input_tokens [1, 2].
        """
        return {"query_tokens": (1, 4), "passage_tokens": (1, 1, 4), "decoder_input_tokens": (1, 2)}

    def get_initial_variables(self, rng: Array, input_shapes: Mapping[str, tuple[int, ...]],
                              input_types: Optional[Mapping[str, Any]] = None) -> PyTree:
        del input_types
        dummy = {name: jnp.ones(input_shapes[name], jnp.int32)
                 for name in ("query_tokens", "passage_tokens", "decoder_input_tokens")}
        return self.module.init({"params": rng, "dropout": rng}, dummy["query_tokens"], dummy["passage_tokens"],
                                dummy["decoder_input_tokens"], deterministic=True)

    # ---------------------------------------------------------------------------------------- retrieval
    def _apply(self, params: PyTree, *args, method: str, rngs: Optional[dict] = None, **kwargs):
        return self.module.apply({"params": params}, *args, method=method, rngs=rngs or {}, **kwargs)

    def encode_for_retrieval(self, params: PyTree, tokens: Array, is_query: bool) -> dict[str, Array]:
        """Retrieval representation of standalone queries or passages (the index path).

        Returns:
          The retriever kind's `vectors`: pooled mode: {"vectors": [n, retrieval_dim]}; token mode:
          {"tokens": [n, len, head_dim] (Q for queries, K for passages), "valid": [n, len]}.
        """
        readout = self._apply(params, tokens, method="retrieval_readout")
        return self._vectors(params, readout, is_query)

    @property
    def retriever(self) -> retrievers.RetrieverKind:
        """The retriever kind of `config.retrieval_mode`."""
        return retrievers.get_retriever(self.config)

    def _vectors(self, params: PyTree, readout: dict[str, Array], is_query: bool) -> dict[str, Array]:
        return self._apply(params, readout, is_query, method="retrieval_vectors")

    def _relative_bias(self, params: PyTree) -> retrievers.RelativeBias:
        return lambda query_positions, key_positions: self._apply(params, query_positions, key_positions,
                                                                  method="relative_bias")

    def score(self, params: PyTree, queries: dict[str, Array], passages: dict[str, Array],
              query_length: Optional[int] = None) -> Array:
        """Scores every query against every passage: [queries, passages].

        Args:
          params: parameters.
          queries / passages: outputs of `encode_for_retrieval` (passages may have extra leading dims; they are
            flattened).
          query_length: token mode with position bias: the query slot length Lq (passage positions start there).
        """
        return self.retriever.score(self.config, queries, passages, self._relative_bias(params), query_length,
                                    self.token_chunk_size)

    # ------------------------------------------------------------------------------------------- losses
    def _forward(self, params: PyTree, query_tokens: Array, batch: Mapping[str, Array],
                 dropout_rng: Optional[Array]) -> dict[str, Array]:
        return self.module.apply({"params": params}, query_tokens, batch["passage_tokens"],
                                 batch["decoder_input_tokens"], deterministic=dropout_rng is None,
                                 rngs={"dropout": dropout_rng} if dropout_rng is not None else {})

    def loss_fn(self, params: PyTree, batch: Mapping[str, Array],
                dropout_rng: Optional[Array]) -> tuple[Array, dict[str, Array]]:
        if self.loss_config.stage is stages.Stage.CLR_PT:
            return clr_pt.loss_fn(self, params, batch, dropout_rng)
        cfg = self.loss_config
        k = batch["passage_tokens"].shape[1]
        out = self._forward(params, batch["query_tokens"], batch, dropout_rng)
        ce, num_tokens, correct = losses.cross_entropy(out["logits"], batch["decoder_target_tokens"],
                                                       batch["decoder_loss_weights"], cfg.label_smoothing)
        passage_present = jnp.any(batch["passage_tokens"] > 0, axis=-1)  # [B, k]
        target = losses.retrieval_target(out["cross_probs"], out["encoded_valid"], k)
        own = self._own_scores(params, self._vectors(params, out["query_readout"], True),
                               self._vectors(params, out["passage_readout"], False))
        kl = losses.reader_retriever_kl(target, own, passage_present)
        loss = cfg.ce_weight * ce + cfg.alpha * kl
        metrics = {"loss/ce": ce, "loss/kl_reader_retriever": kl, "accuracy": correct / jnp.maximum(num_tokens, 1.0),
                   "num_tokens": num_tokens, "loss": loss}
        return loss, metrics

    def grad_cache_parts(self) -> Optional[clr_pt.GradCacheParts]:
        """Stage 1: the loss split the GradCache step needs (its retrieval term spans the whole batch); else None."""
        return clr_pt.grad_cache_parts(self) if self.loss_config.stage is stages.Stage.CLR_PT else None

    def _own_scores(self, params: PyTree, query_side: dict[str, Array], passage_side: dict[str, Array]) -> Array:
        """Each query against its own k passages: [B, k]."""
        return self.retriever.own_scores(self.config, query_side, passage_side, self._relative_bias(params),
                                         self.token_chunk_size)

    # ------------------------------------------------------------------------------------------ decoding
    def _step_fn(self, params: PyTree, encoded: Array, encoded_valid: Array):
        def step(cache, tokens):
            (logits, _), mutated = self.module.apply(
                {"params": params, "cache": cache}, encoded, encoded_valid, tokens, True, True,
                method="decode", mutable=["cache"])
            return logits[:, -1], mutated["cache"]
        return step

    def _init_cache(self, params: PyTree, encoded: Array, encoded_valid: Array) -> PyTree:
        dummy = jnp.zeros((encoded.shape[0], self.max_decode_length), jnp.int32)
        _, mutated = self.module.apply({"params": params}, encoded, encoded_valid, dummy, True, True,
                                       method="decode", mutable=["cache"])
        return mutated["cache"]

    def predict_batch(self, params: PyTree, batch: Mapping[str, Array], rng: Optional[Array] = None) -> Array:
        """Decodes answers [B, max_decode_length] (greedy, or the best beam) from the encoded pairs."""
        del rng
        enc = self._apply(params, batch["query_tokens"], batch["passage_tokens"], method="encode_pairs")
        encoded, valid = enc["encoded"], enc["encoded_valid"]
        batch_size = encoded.shape[0]
        if self.num_beams == 1:
            cache = self._init_cache(params, encoded, valid)
            return decoding.greedy_decode(self._step_fn(params, encoded, valid), cache, batch_size,
                                          self.max_decode_length, self.eos_id)
        encoded = jnp.repeat(encoded, self.num_beams, axis=0)
        valid = jnp.repeat(valid, self.num_beams, axis=0)
        cache = self._init_cache(params, encoded, valid)
        tokens, _ = decoding.beam_search(self._step_fn(params, encoded, valid), cache, batch_size,
                                         self.num_beams, self.max_decode_length, self.eos_id)
        return tokens[:, 0]

    def score_batch(self, params: PyTree, batch: Mapping[str, Array]) -> Array:
        """Log-likelihood of each example's target tokens: [B]."""
        out = self._forward(params, batch["query_tokens"], batch, None)
        log_probs = jax.nn.log_softmax(out["logits"], axis=-1)
        target_lp = jnp.take_along_axis(log_probs, batch["decoder_target_tokens"][..., None], -1)[..., 0]
        return jnp.sum(target_lp * batch["decoder_loss_weights"], axis=-1)

    # --------------------------------------------------------------------------------------------- FLOPs
    def flops_per_step(self, input_shapes: Mapping[str, tuple[int, ...]]) -> float:
        """Matmul FLOPs of forward + backward (3x forward) of one FiD batch of these shapes."""
        cfg = self.config
        batch, k, passage_len = input_shapes["passage_tokens"]
        query_len = input_shapes["query_tokens"][1]
        answer_len = input_shapes["decoder_input_tokens"][1]
        inner, emb, mlp = cfg.num_heads * cfg.head_dim, cfg.emb_dim, cfg.mlp_dim
        branches = len(cfg.mlp_activations)
        per_token_dense = 2 * (4 * emb * inner + (branches + 1) * emb * mlp)

        def attention(q_len: int, k_len: int) -> int:
            return 2 * 2 * q_len * k_len * inner  # QK^T and PV

        lower, upper = cfg.retriever_layer_index, cfg.num_encoder_layers - cfg.retriever_layer_index
        pair_len = query_len + passage_len
        encoder = lower * (batch * query_len * per_token_dense + batch * attention(query_len, query_len)
                           + batch * k * (passage_len * per_token_dense + attention(passage_len, passage_len)))
        encoder += upper * batch * k * (pair_len * per_token_dense + attention(pair_len, pair_len))
        enc_len = k * pair_len
        cross_kv = 2 * 2 * enc_len * emb * inner
        decoder_layer = (answer_len * (per_token_dense + 2 * 2 * emb * inner) + attention(answer_len, answer_len)
                         + cross_kv + attention(answer_len, enc_len))
        decoder = batch * (cfg.num_decoder_layers * decoder_layer + 2 * answer_len * emb * cfg.vocab_size)
        retrieval = self.retriever.head_flops(cfg, batch * (k + 1))
        return 3.0 * float(encoder + decoder + retrieval)
