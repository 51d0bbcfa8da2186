"""Hugging Face T5 tensor names <-> our parameter paths, in both directions, from one table.

HF torch `Linear` weights are [out, in] and our kernels [in, out], so every kernel is transposed; so is the
relative position bias (HF `relative_attention_bias.weight` [buckets, heads], ours `rel_embedding`
[heads, buckets]), which HF stores only in block 0 of each stack, as T5X stores one per stack. Neither side scales
attention logits by 1/sqrt(d), so query/key weights map unchanged. The released CLASS models keep the pooled
retriever inside block B's self-attention module (`SelfAttention.query_proj` / `passage_proj` / `layer_norm`);
that `SelfAttention.layer_norm` is the retriever's shared norm, not the block's own `layer.0.layer_norm`.
"""

import dataclasses
import re
from typing import Mapping, Optional

import numpy as np

from class_jax.checkpoints import param_layout
from class_jax.checkpoints.import_report import ImportReport
from class_jax.runtime.errors import UserError
from class_jax.models import retrievers
from class_jax.models.config import ModelConfig

# (HF name template, our path template, transpose). `{i}` is a layer index, `{wi}` each MLP input kernel name
# (`wi`, or `wi_0`, `wi_1`, ...: the same names on both sides), `{B}` the retriever layer.
_MODEL_RULES = (
    ("shared.weight", "token_embedder/embedding", False),
    ("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
     "encoder/relpos_bias/rel_embedding", True),
    ("encoder.final_layer_norm.weight", "encoder/encoder_norm/scale", False),
    ("decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
     "decoder/relpos_bias/rel_embedding", True),
    ("decoder.final_layer_norm.weight", "decoder/decoder_norm/scale", False),
)
_LM_HEAD_RULE = ("lm_head.weight", "decoder/logits_dense/kernel", True)
_ATTENTION_RULES = (("q", "query"), ("k", "key"), ("v", "value"), ("o", "out"))
_ENCODER_LAYER_RULES = (
    ("encoder.block.{i}.layer.0.layer_norm.weight", "encoder/layers_{i}/pre_attention_layer_norm/scale", False),
    *((f"encoder.block.{{i}}.layer.0.SelfAttention.{hf}.weight", f"encoder/layers_{{i}}/attention/{ours}/kernel",
       True) for hf, ours in _ATTENTION_RULES),
    ("encoder.block.{i}.layer.1.layer_norm.weight", "encoder/layers_{i}/pre_mlp_layer_norm/scale", False),
    ("encoder.block.{i}.layer.1.DenseReluDense.{wi}.weight", "encoder/layers_{i}/mlp/{wi}/kernel", True),
    ("encoder.block.{i}.layer.1.DenseReluDense.wo.weight", "encoder/layers_{i}/mlp/wo/kernel", True),
)
_DECODER_LAYER_RULES = (
    ("decoder.block.{i}.layer.0.layer_norm.weight", "decoder/layers_{i}/pre_self_attention_layer_norm/scale", False),
    *((f"decoder.block.{{i}}.layer.0.SelfAttention.{hf}.weight",
       f"decoder/layers_{{i}}/self_attention/{ours}/kernel", True) for hf, ours in _ATTENTION_RULES),
    ("decoder.block.{i}.layer.1.layer_norm.weight", "decoder/layers_{i}/pre_cross_attention_layer_norm/scale",
     False),
    *((f"decoder.block.{{i}}.layer.1.EncDecAttention.{hf}.weight",
       f"decoder/layers_{{i}}/encoder_decoder_attention/{ours}/kernel", True) for hf, ours in _ATTENTION_RULES),
    ("decoder.block.{i}.layer.2.layer_norm.weight", "decoder/layers_{i}/pre_mlp_layer_norm/scale", False),
    ("decoder.block.{i}.layer.2.DenseReluDense.{wi}.weight", "decoder/layers_{i}/mlp/{wi}/kernel", True),
    ("decoder.block.{i}.layer.2.DenseReluDense.wo.weight", "decoder/layers_{i}/mlp/wo/kernel", True),
)
# The retriever kind's own tensors come from `RetrieverKind.hf_tensor_rules`.

# Copies of `shared.weight` that older checkpoints (plain `torch.save(model.state_dict())`) carry.
_EMBEDDING_ALIASES = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")
# Present in some old T5 checkpoints; T5 cross-attention has no position bias and transformers ignores it.
_IGNORED = ("decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight",)
_RETRIEVER_NAME = re.compile(r"^encoder\.block\.(\d+)\.layer\.0\.SelfAttention\.(query_proj|passage_proj)\.weight$")


@dataclasses.dataclass(frozen=True)
class TensorMapping:
    """One HF tensor and the parameter it holds."""

    hf_name: str
    param: str
    transpose: bool


def tensor_table(config: ModelConfig) -> list[TensorMapping]:
    """Every HF tensor of a model with this config, with our parameter path for it.

    Args:
      config: the model; decides layer counts, MLP kernels, the untied head and the retriever.

    Returns:
      The mappings, one per parameter of `param_layout.expected_shapes(config)`.

    Raises:
      UserError: pooled retrieval at B == num_encoder_layers, which the HF layout (retriever inside block B)
        cannot hold.
    """
    rules = list(_MODEL_RULES)
    if not config.logits_via_embedding:
        rules.append(_LM_HEAD_RULE)
    table = [TensorMapping(*rule) for rule in rules]
    for stack_rules, num_layers in ((_ENCODER_LAYER_RULES, config.num_encoder_layers),
                                    (_DECODER_LAYER_RULES, config.num_decoder_layers)):
        for i in range(num_layers):
            for hf, ours, transpose in stack_rules:
                for wi in (param_layout.mlp_kernel_names(config) if "{wi}" in hf else [None]):
                    table.append(TensorMapping(hf.format(i=i, wi=wi), ours.format(i=i, wi=wi), transpose))
    table.extend(TensorMapping(*rule) for rule in retrievers.get_retriever(config).hf_tensor_rules(config))
    return table


def find_retriever_block(hf_names: list[str]) -> Optional[int]:
    """The block B holding CLASS retriever projections in a set of HF tensor names, or None.

    Raises:
      UserError: projections in more than one block.
    """
    blocks = {int(match.group(1)) for match in map(_RETRIEVER_NAME.match, hf_names) if match}
    if len(blocks) > 1:
        raise UserError(f"retriever projections found in several encoder blocks {sorted(blocks)}; expected one")
    return blocks.pop() if blocks else None


def _hf_shape(shape: tuple[int, ...], transpose: bool) -> tuple[int, ...]:
    return tuple(reversed(shape)) if transpose else tuple(shape)


def _consume_aliases(tensors: dict[str, np.ndarray], report: ImportReport, source: str) -> None:
    """Removes tolerated redundant tensors from `tensors`, checking that tied copies really are copies."""
    shared = tensors.get("shared.weight")
    for alias in _EMBEDDING_ALIASES:
        if alias in tensors:
            copy = tensors.pop(alias)
            if shared is None or copy.shape != shared.shape or not np.array_equal(copy, shared):
                raise UserError(f"{source}: {alias} differs from shared.weight; untied input embeddings are not "
                                "supported (T5 shares one embedding between encoder and decoder)")
    for name in _IGNORED:
        if name in tensors:
            tensors.pop(name)
            report.notes.append(f"ignored {name} (T5 cross-attention has no position bias; transformers ignores "
                                "it too)")


def hf_to_params(hf_tensors: Mapping[str, np.ndarray], config: ModelConfig, report: ImportReport,
                 *, source: str, lm_head_from_shared: bool = False) -> param_layout.FlatParams:
    """Maps HF tensors onto our flat float32 parameters, refusing anything that does not fit `config`.

    Args:
      hf_tensors: HF name -> array (any float dtype).
      config: the model the tensors are for.
      report: receives notes and the source dtypes.
      source: the checkpoint path, for messages.
      lm_head_from_shared: the HF model computes logits with `shared.weight` but without T5 v1.0's rescaling
        (transformers >= 5 ties mT5's head and stores no `lm_head.weight`): build `decoder/logits_dense` from
        `shared.weight` when `lm_head.weight` is absent.

    Returns:
      Our flat parameters (only those the source has; the pooled retriever may be missing, see
      `import_report.add_new_parameters`).

    Raises:
      UserError: missing, unexpected or mis-shaped tensors (all named), or a tied model with a distinct head.
    """
    tensors = dict(hf_tensors)
    report.count_dtypes(tensors.values())
    _consume_aliases(tensors, report, source)
    if config.logits_via_embedding and "lm_head.weight" in tensors:
        head = tensors.pop("lm_head.weight")
        if head.shape != tensors.get("shared.weight", np.empty(0)).shape or not np.array_equal(
                head, tensors["shared.weight"]):
            raise UserError(f"{source}: the config ties the output layer to the embedding (rescaled logits, T5 v1.0) "
                            "but lm_head.weight differs from shared.weight; that combination is not supported")
        report.notes.append("lm_head.weight equals shared.weight in a tied model: used as the tied embedding")
    table = tensor_table(config)
    if (not config.logits_via_embedding and lm_head_from_shared and "lm_head.weight" not in tensors
            and "shared.weight" in tensors):
        tensors["lm_head.weight"] = tensors["shared.weight"]
        report.notes.append("lm_head.weight absent: decoder/logits_dense built from shared.weight (tied values, "
                            "logits not rescaled)")

    optional = {m.hf_name for m in table if m.param in param_layout.RETRIEVER_PARAMS}
    missing = [m.hf_name for m in table if m.hf_name not in tensors and m.hf_name not in optional]
    known = {m.hf_name for m in table}
    unexpected = sorted(name for name in tensors if name not in known)
    expected = param_layout.expected_shapes(config)
    misshaped = [f"{m.hf_name} {tuple(tensors[m.hf_name].shape)} (expected {_hf_shape(expected[m.param], m.transpose)})"
                 for m in table
                 if m.hf_name in tensors and tuple(tensors[m.hf_name].shape) != _hf_shape(expected[m.param],
                                                                                           m.transpose)]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} tensor(s): {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} tensor(s): {', '.join(unexpected)}")
    if misshaped:
        problems.append(f"wrong shape for {len(misshaped)} tensor(s): {'; '.join(misshaped)}")
    if problems:
        raise UserError(f"{source} does not match its config: " + " | ".join(problems))

    flat: param_layout.FlatParams = {}
    for mapping in table:
        if mapping.hf_name in tensors:
            array = tensors[mapping.hf_name]
            # Always a fresh, writable float32 copy: readers may hand out read-only views of file buffers.
            flat[mapping.param] = np.array(array.T if mapping.transpose else array, dtype=np.float32, order="C")
    return flat


def params_to_hf(flat: Mapping[str, np.ndarray], config: ModelConfig) -> dict[str, np.ndarray]:
    """Our flat parameters -> HF tensors (float32, C-contiguous, as safetensors needs).

    Args:
      flat: every parameter of `config` (flat paths).
      config: the model.

    Returns:
      HF name -> array, in table order.

    Raises:
      UserError: a parameter of the table is missing from `flat` or has the wrong shape.
    """
    problems = param_layout.describe_mismatches({p: np.shape(a) for p, a in flat.items()}, config,
                                                source="parameters to export")
    if problems:
        raise UserError(" | ".join(problems))
    tensors = {}
    for mapping in tensor_table(config):
        array = np.asarray(flat[mapping.param], dtype=np.float32)
        tensors[mapping.hf_name] = np.ascontiguousarray(array.T if mapping.transpose else array)
    return tensors
