"""Model hyper-parameters of the CLASS mT5 encoder-decoder."""

import dataclasses
from typing import Optional

# The (query, passage) pair layouts of layers [B, L): see ModelConfig.pair_layout.
PAIR_LAYOUTS = ("slot", "packed")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Shape and behaviour of a CLASS model (mT5 / T5.1.1 blocks plus the retriever split).

    The parameter tree follows T5X's `t5x/examples/t5/network.py` names exactly (so T5X checkpoints map 1:1), plus
    `encoder/retriever/{query_proj,passage_proj}/kernel` and `encoder/retriever/layer_norm/scale`.

    Attributes:
      vocab_size: rows of the (untied) input embedding and columns of `decoder/logits_dense`.
      emb_dim: d_model.
      num_heads: attention heads.
      head_dim: d_kv, the per-head size (heads * head_dim need not equal emb_dim).
      mlp_dim: d_ff of the gated-GELU MLP.
      num_encoder_layers: L of the encoder.
      num_decoder_layers: layers of the decoder.
      retriever_layer: B; layers [0, B) attend block-diagonally (query / passage separately), the retrieval
        vectors are read at the input of layer B. None means num_encoder_layers // 2.
      relative_attention_num_buckets: buckets of the T5 relative position bias.
      relative_attention_max_distance: distance beyond which buckets saturate.
      dropout_rate: dropout on embeddings, attention probabilities, sublayer outputs and the MLP hidden.
      attention_dropout_rate: dropout on the attention probabilities alone, where it should differ from
        dropout_rate (None: dropout_rate, as T5X and Hugging Face mT5 have it). 0.0 lets training use a fused
        `attention_kernel`, which has no dropout.
      layer_norm_epsilon: RMSNorm epsilon.
      mlp_activations: activations of the MLP input branches, multiplied together. T5.1.1/mT5 use
        ("gelu", "linear") with kernels `wi_0`, `wi_1`; one activation (T5 v1.0: ("relu",)) gives a single `wi`.
      logits_via_embedding: tie the output projection to the input embedding (T5 v1.0), scaling the decoder
        output by emb_dim**-0.5 first; mT5 and T5.1.1 use a separate `decoder/logits_dense` (False).
      dtype: compute dtype ("float32" or "bfloat16"); parameters are always stored in float32.
      remat_policy: rematerialisation of each layer: "none", "full" (recompute everything), "minimal"
        (save only matmul outputs without batch dims, i.e. `dots_with_no_batch_dims_saveable`).
      attention_kernel: how attention runs where no probabilities are needed (no `return_probs`, no dropout on
        them): "einsum" (the explicit products and softmax, everywhere), "xla" or "cudnn" (one
        `jax.nn.dot_product_attention` call with that implementation; "cudnn" is the fused flash-attention kernel of
        NVIDIA GPUs, which needs bfloat16 compute and adds the position bias in bfloat16, as T5X's bfloat16 runs
        do; on other backends it runs as "xla"). Layers that return or drop out attention probabilities (see
        attention_dropout_rate), and cached decoding steps, use "einsum".
      retrieval_mode: the retriever kind (`retrievers.known_kinds()`): "pooled" (CLASS: mean-pooled projected
        vectors) or "token" (ReAtt: one head's Q/K, max-sim).
      retrieval_head: the head whose Q/K give token vectors in "token" mode.
      token_score_position_bias: token mode: add the relative position bias of layer B to each q.k (ReAtt training).
      token_score_length_norm: token mode: divide the max-sim sum by the number of query tokens.
      retrieval_target_dropout: take the retrieval target from post-dropout attention probabilities, as the
        released PyTorch code does (for bit-parity experiments only; the default is dropout-free).
      identical_projection_init: initialise `passage_proj` as a copy of `query_proj` (the two towers start
        identical, as DPR's two encoders start from one BERT), so a fresh retriever already scores a passage by
        the similarity of its pooled representation to the query's; the released code draws the two
        independently, which makes a fresh retriever's scores noise. Only matters where the projections are
        initialised rather than loaded.
      pair_layout: where the passage sits in a (query, passage) pair in layers [B, L), which sets the query <->
        passage relative positions there: "slot" (the passage starts at the query slot length Lq whatever the
        query's length) or "packed" (the passage starts right after the query's last real token, as the released
        CLASS code packs a pair; the default of imported released checkpoints). Tensors keep the slot layout
        either way, and the retrieval vectors (read below B) are the same.
      normalize_queries: the checkpoint was trained on queries normalised by `tasks.text_inputs.normalize_query`
        (the release's `normalize_text.normalize`); query encoding for retrieval (`retrieve`, `ask`, refresh)
        applies it. SeqIO tasks take the gin macro `NORMALIZE_QUERIES` instead, since they tokenise before a
        model is known. True for imported released checkpoints.
    """

    vocab_size: int = 250112
    emb_dim: int = 512
    num_heads: int = 6
    head_dim: int = 64
    mlp_dim: int = 1024
    num_encoder_layers: int = 8
    num_decoder_layers: int = 8
    retriever_layer: Optional[int] = None
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    dropout_rate: float = 0.1
    attention_dropout_rate: Optional[float] = None
    layer_norm_epsilon: float = 1e-6
    mlp_activations: tuple[str, ...] = ("gelu", "linear")
    logits_via_embedding: bool = False
    dtype: str = "float32"
    remat_policy: str = "none"
    attention_kernel: str = "einsum"
    retrieval_mode: str = "pooled"
    retrieval_head: int = 0
    token_score_position_bias: bool = False
    token_score_length_norm: bool = False
    retrieval_target_dropout: bool = False
    identical_projection_init: bool = False
    pair_layout: str = "slot"
    normalize_queries: bool = False

    @property
    def retriever_layer_index(self) -> int:
        """B, with the default L // 2 resolved."""
        if self.retriever_layer is None:
            return self.num_encoder_layers // 2
        return self.retriever_layer

    @property
    def attention_probs_dropout_rate(self) -> float:
        """Dropout on the attention probabilities, with the default (dropout_rate) resolved."""
        return self.dropout_rate if self.attention_dropout_rate is None else self.attention_dropout_rate

    @property
    def retrieval_dim(self) -> int:
        """Size of a pooled retrieval vector: heads * head_dim (the projections' output)."""
        return self.num_heads * self.head_dim

    def validate(self) -> None:
        """Raises ValueError naming the field when the configuration cannot be built."""
        if not 0 <= self.retriever_layer_index < self.num_encoder_layers:
            # Retrieval reads the input of layer B, so layer B must exist.
            raise ValueError(f"retriever_layer={self.retriever_layer} outside [0, {self.num_encoder_layers})")
        # The kinds' module imports this one (and the network layers), so it is imported on use.
        from class_jax.models import retrievers  # pylint: disable=import-outside-toplevel
        retrievers.get_retriever(self).validate(self)  # an unknown retrieval_mode lists the known kinds
        if self.dtype not in ("float32", "bfloat16"):
            raise ValueError(f"dtype={self.dtype!r}: expected 'float32' or 'bfloat16'")
        if self.remat_policy not in ("none", "full", "minimal"):
            raise ValueError(f"remat_policy={self.remat_policy!r}: expected 'none', 'full' or 'minimal'")
        if self.attention_dropout_rate is not None and not 0.0 <= self.attention_dropout_rate < 1.0:
            raise ValueError(f"attention_dropout_rate={self.attention_dropout_rate}: expected None or [0, 1)")
        if self.attention_kernel not in ("einsum", "xla", "cudnn"):
            raise ValueError(f"attention_kernel={self.attention_kernel!r}: expected 'einsum', 'xla' or 'cudnn'")
        if self.attention_kernel == "cudnn" and self.dtype != "bfloat16":
            raise ValueError("attention_kernel='cudnn' needs dtype='bfloat16' (cuDNN's fused attention has no "
                             "float32 kernel)")
        if self.pair_layout not in PAIR_LAYOUTS:
            raise ValueError(f"pair_layout={self.pair_layout!r}: expected one of {', '.join(map(repr, PAIR_LAYOUTS))}")
        if len(self.mlp_activations) < 1:
            raise ValueError("mlp_activations must name at least one activation")
