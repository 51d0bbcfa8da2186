"""Hugging Face T5 / mT5 `config.json` <-> ModelConfig, including the ReAtt and released-CLASS extras.

Three flavours of HF checkpoint are recognised:
  * ReAtt (`retrieval_layer`, `retrieval_head`, `distillation_tau`): token-mode retrieval at that layer / head.
  * released CLASS (`architectures: [RRForConditionalGeneration]`, `retriever_layer`, `n_passages`, and the
    retriever tensors in encoder block B): pooled retrieval at B.
  * plain T5 / mT5: pooled retrieval at the default B; the retriever is created and reported by the importer.

Output-layer semantics follow the pinned transformers (5.x): mT5 never rescales the decoder output (its
`tie_word_embeddings` only says the head may share the embedding's values); T5 rescales by d_model**-0.5 when
`scale_decoder_outputs` (or, in configs written before that key existed, `tie_word_embeddings`) is true, which
is our `logits_via_embedding`.
"""

import dataclasses
from typing import Any, Mapping, Optional

from class_jax.runtime.errors import UserError
from class_jax.models import retrievers
from class_jax.models.config import ModelConfig

# HF activation (ACT2FN name) -> ours (class_jax.models.layers). "gated-gelu" means gelu_new in HF.
_ACTIVATIONS_FROM_HF = {"gelu_new": "gelu", "gelu_pytorch_tanh": "gelu", "gelu": "gelu_exact", "relu": "relu",
                        "silu": "silu", "swish": "silu"}
_ACTIVATIONS_TO_HF = {"gelu": "gelu_new", "gelu_exact": "gelu", "relu": "relu", "silu": "silu"}
_REQUIRED_KEYS = ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads")
_SUPPORTED_MODEL_TYPES = ("t5", "mt5")
CLASS_ARCHITECTURE = retrievers.CLASS_ARCHITECTURE


@dataclasses.dataclass(frozen=True)
class HfModelSpec:
    """How to read an HF checkpoint.

    Attributes:
      config: our hyper-parameters for it.
      flavour: "class", "reatt" or "plain".
      lm_head_from_shared: an untied-semantics model whose `lm_head.weight` may be absent because it shares
        `shared.weight`'s values (transformers >= 5 always ties the head at init).
      notes: assumptions made, for the import report.
    """

    config: ModelConfig
    flavour: str
    lm_head_from_shared: bool
    notes: tuple[str, ...] = ()


def _mlp_activations(feed_forward_proj: str, source: str) -> tuple[str, ...]:
    parts = feed_forward_proj.split("-")
    gated = len(parts) == 2 and parts[0] == "gated"
    if len(parts) > 2 or (len(parts) == 2 and not gated):
        raise UserError(f"{source}: feed_forward_proj={feed_forward_proj!r} is not of the form 'ACT' or 'gated-ACT'")
    hf_activation = "gelu_new" if feed_forward_proj == "gated-gelu" else parts[-1]
    if hf_activation not in _ACTIVATIONS_FROM_HF:
        raise UserError(f"{source}: feed_forward_proj={feed_forward_proj!r} is not supported (activation "
                        f"{hf_activation!r}; supported: {', '.join(sorted(_ACTIVATIONS_FROM_HF))})")
    ours = _ACTIVATIONS_FROM_HF[hf_activation]
    return (ours, "linear") if gated else (ours,)


def spec_from_hf_config(hf: Mapping[str, Any], *, source: str, retriever_block_in_tensors: Optional[int],
                        overrides: Optional[Mapping[str, Any]] = None) -> HfModelSpec:
    """Builds our ModelConfig for an HF T5 / mT5 config.json.

    Args:
      hf: the parsed config.json.
      source: the checkpoint path, for messages.
      retriever_block_in_tensors: the encoder block whose self-attention holds CLASS retriever projections
        (`hf_mapping.find_retriever_block`), or None.
      overrides: ModelConfig fields to set afterwards (e.g. {"retrieval_mode": "token"}, {"dropout_rate": 0.0}).

    Returns:
      The spec.

    Raises:
      UserError: unsupported model type or activation, missing keys, contradictory retriever layer, or overrides
        that make an invalid config.
    """
    model_type = hf.get("model_type")
    if model_type not in _SUPPORTED_MODEL_TYPES:
        raise UserError(f"{source}: model_type={model_type!r} is not supported (supported: "
                        f"{', '.join(_SUPPORTED_MODEL_TYPES)}; umt5 / longt5 have other attention layouts)")
    missing = [key for key in _REQUIRED_KEYS if key not in hf]
    if missing:
        raise UserError(f"{source}: config.json lacks {', '.join(missing)}")
    notes = []
    feed_forward_proj = hf.get("feed_forward_proj", "gated-gelu" if model_type == "mt5" else "relu")
    if model_type == "mt5":
        logits_via_embedding = False
    else:
        logits_via_embedding = bool(hf.get("scale_decoder_outputs", hf.get("tie_word_embeddings", True)))

    fields: dict[str, Any] = dict(
        vocab_size=int(hf["vocab_size"]), emb_dim=int(hf["d_model"]), num_heads=int(hf["num_heads"]),
        head_dim=int(hf["d_kv"]), mlp_dim=int(hf["d_ff"]), num_encoder_layers=int(hf["num_layers"]),
        num_decoder_layers=int(hf.get("num_decoder_layers") or hf["num_layers"]),
        relative_attention_num_buckets=int(hf.get("relative_attention_num_buckets", 32)),
        relative_attention_max_distance=int(hf.get("relative_attention_max_distance", 128)),
        dropout_rate=float(hf.get("dropout_rate", 0.1)), layer_norm_epsilon=float(hf.get("layer_norm_epsilon", 1e-6)),
        mlp_activations=_mlp_activations(feed_forward_proj, source), logits_via_embedding=logits_via_embedding)

    if "retriever_head" in hf and retriever_block_in_tensors is None and "retrieval_layer" not in hf:
        # A token-mode teacher under the release's names (its RRForConditionalGeneration reads retriever_layer /
        # retriever_head; ReAtt's own config says retrieval_layer / retrieval_head): read it as ReAtt.
        if "retriever_layer" not in hf:
            raise UserError(f"{source}: config has retriever_head but no retriever_layer (a token-mode teacher "
                            "needs both, or ReAtt's retrieval_layer / retrieval_head)")
        renamed = {"retrieval_layer": hf["retriever_layer"], "retrieval_head": hf["retriever_head"]}
        hf = {key: value for key, value in hf.items() if key not in ("retriever_layer", "retriever_head",
                                                                      "architectures")}
        hf.update(renamed)
        notes.append("token-mode teacher config under the release's names (retriever_layer / retriever_head)")
    is_class = (CLASS_ARCHITECTURE in (hf.get("architectures") or []) or "retriever_layer" in hf
                or retriever_block_in_tensors is not None)
    if "retrieval_layer" in hf:
        if is_class:
            raise UserError(f"{source}: has both ReAtt (retrieval_layer) and CLASS (retriever_layer / retriever "
                            "tensors) markers")
        if "retrieval_head" not in hf:
            raise UserError(f"{source}: ReAtt config has retrieval_layer but no retrieval_head")
        flavour = "reatt"
        fields.update(retrievers.TOKEN.hf_config_fields(hf))
        notes.append("ReAtt checkpoint: token-mode retrieval; token_score_position_bias / token_score_length_norm "
                     "left at their defaults (set them to reproduce ReAtt's training-time scores)")
    elif is_class:
        flavour = "class"
        block = hf.get("retriever_layer")
        if block is not None and retriever_block_in_tensors is not None and int(block) != retriever_block_in_tensors:
            raise UserError(f"{source}: config retriever_layer={block} but the retriever tensors are in encoder "
                            f"block {retriever_block_in_tensors}")
        if block is None:
            block = retriever_block_in_tensors
            notes.append(f"retriever_layer not in config.json: taken from the tensors' block ({block})"
                         if block is not None else "CLASS config without retriever_layer: default B = L // 2")
        fields.update(retrieval_mode=retrievers.POOLED.name, retriever_layer=None if block is None else int(block))
        # The release packed each pair and normalised its queries: run the reader on inputs like its training's.
        fields.update(pair_layout="packed", normalize_queries=True)
        notes.append("released CLASS checkpoint: pair_layout='packed' and normalize_queries=True, as the release "
                     "trained it (override with --override pair_layout=slot / normalize_queries=false)")
    else:
        flavour = "plain"
        fields.update(retrieval_mode=retrievers.POOLED.name, retriever_layer=None)

    config = ModelConfig(**fields)
    if overrides:
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(ModelConfig)})
        if unknown:
            raise UserError(f"unknown ModelConfig field(s) to override: {', '.join(unknown)}")
        config = dataclasses.replace(config, **overrides)
        notes.append(f"overridden: {dict(overrides)}")
    try:
        config.validate()
    except ValueError as e:
        raise UserError(f"{source}: {e}") from e
    return HfModelSpec(config=config, flavour=flavour, lm_head_from_shared=not config.logits_via_embedding,
                       notes=tuple(notes))


def _feed_forward_proj(config: ModelConfig) -> str:
    activations = tuple(config.mlp_activations)
    unsupported = UserError(f"mlp_activations={activations} has no Hugging Face T5 equivalent (HF supports 'ACT' "
                            "and 'gated-ACT' = (ACT, 'linear'))")
    if len(activations) == 1:
        if activations[0] not in _ACTIVATIONS_TO_HF:
            raise unsupported
        return _ACTIVATIONS_TO_HF[activations[0]]
    if len(activations) != 2 or activations[1] != "linear" or activations[0] not in _ACTIVATIONS_TO_HF:
        raise unsupported
    if activations[0] == "gelu":
        return "gated-gelu"
    if activations[0] == "gelu_exact":
        # HF reads "gated-gelu" as the tanh approximation, so exact GELU cannot be gated there.
        raise unsupported
    return f"gated-{_ACTIVATIONS_TO_HF[activations[0]]}"


def hf_config_from_spec(config: ModelConfig, source_hf_config: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """Writes an HF config.json for our model, keeping the source's own keys (n_passages, token ids, ...).

    Args:
      config: our model.
      source_hf_config: the config.json it was imported from, if any.

    Returns:
      The config dict.

    Raises:
      UserError: the MLP has no HF equivalent.
    """
    hf = dict(source_hf_config or {})
    model_type = hf.get("model_type", "t5")
    if config.logits_via_embedding:
        model_type = "t5"  # mT5 cannot rescale its logits
    hf.update(
        model_type=model_type, vocab_size=config.vocab_size, d_model=config.emb_dim, d_kv=config.head_dim,
        d_ff=config.mlp_dim, num_layers=config.num_encoder_layers, num_decoder_layers=config.num_decoder_layers,
        num_heads=config.num_heads, relative_attention_num_buckets=config.relative_attention_num_buckets,
        relative_attention_max_distance=config.relative_attention_max_distance, dropout_rate=config.dropout_rate,
        layer_norm_epsilon=config.layer_norm_epsilon, feed_forward_proj=_feed_forward_proj(config),
        is_encoder_decoder=True, tie_word_embeddings=config.logits_via_embedding)
    # Derived keys transformers recomputes from feed_forward_proj; stale copies would only confuse readers.
    for derived in ("dense_act_fn", "is_gated_act"):
        hf.pop(derived, None)
    if model_type == "t5":
        hf["scale_decoder_outputs"] = config.logits_via_embedding
    hf.setdefault("pad_token_id", 0)
    hf.setdefault("eos_token_id", 1)
    hf.setdefault("decoder_start_token_id", 0)
    for key in retrievers.all_hf_config_keys():
        hf.pop(key, None)
    retrievers.get_retriever(config).write_hf_config(config, hf)
    return hf
