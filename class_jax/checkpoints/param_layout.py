"""The parameter tree of a CLASS model, described from its ModelConfig alone.

Every importer checks the tensors it finds against this description before building anything, so a checkpoint
with missing, extra or mis-shaped tensors is refused with the offending names instead of failing later inside
the model. The names follow T5X's `t5x/examples/t5/network.py` plus the retriever kind's own parameters
(`RetrieverKind.param_shapes`: `encoder/retriever/...`, pooled mode only); `tests/checkpoints` checks this
description against the shapes the Flax model itself initialises.

Parameters are handled flat, as {"encoder/layers_0/attention/query/kernel": array}, and nested only at the edges
(the model and Orbax want the nested "params" tree).
"""

from typing import Any, Mapping

import numpy as np

from class_jax.models import retrievers
from class_jax.models.config import ModelConfig

Shape = tuple[int, ...]
FlatParams = dict[str, np.ndarray]

# The retriever kinds' own parameters (the pooled-mode head): absent from every public T5 / mT5 / ReAtt
# checkpoint, so the only parameters an importer may create (see `import_report.add_new_parameters`); anything
# else missing is an error.
RETRIEVER_PARAMS = tuple(path for kind in retrievers.kinds() for path in kind.param_paths)


def mlp_kernel_names(config: ModelConfig) -> list[str]:
    """Names of the MLP input kernels: `wi` for one activation, `wi_0`, `wi_1`, ... for gated MLPs."""
    if len(config.mlp_activations) == 1:
        return ["wi"]
    return [f"wi_{i}" for i in range(len(config.mlp_activations))]


def _attention_shapes(prefix: str, config: ModelConfig) -> dict[str, Shape]:
    inner = config.num_heads * config.head_dim
    shapes = {f"{prefix}/{name}/kernel": (config.emb_dim, inner) for name in ("query", "key", "value")}
    shapes[f"{prefix}/out/kernel"] = (inner, config.emb_dim)
    return shapes


def _mlp_shapes(prefix: str, config: ModelConfig) -> dict[str, Shape]:
    shapes = {f"{prefix}/{name}/kernel": (config.emb_dim, config.mlp_dim) for name in mlp_kernel_names(config)}
    shapes[f"{prefix}/wo/kernel"] = (config.mlp_dim, config.emb_dim)
    return shapes


def expected_shapes(config: ModelConfig) -> dict[str, Shape]:
    """Every parameter of a model with this config and its shape.

    Args:
      config: the model's hyper-parameters.

    Returns:
      Flat path ("encoder/layers_0/attention/query/kernel") -> shape, in a stable order.
    """
    emb, heads, buckets = config.emb_dim, config.num_heads, config.relative_attention_num_buckets
    shapes: dict[str, Shape] = {"token_embedder/embedding": (config.vocab_size, emb)}

    shapes["encoder/relpos_bias/rel_embedding"] = (heads, buckets)
    for i in range(config.num_encoder_layers):
        layer = f"encoder/layers_{i}"
        shapes[f"{layer}/pre_attention_layer_norm/scale"] = (emb,)
        shapes.update(_attention_shapes(f"{layer}/attention", config))
        shapes[f"{layer}/pre_mlp_layer_norm/scale"] = (emb,)
        shapes.update(_mlp_shapes(f"{layer}/mlp", config))
    shapes["encoder/encoder_norm/scale"] = (emb,)
    shapes.update(retrievers.get_retriever(config).param_shapes(config))

    shapes["decoder/relpos_bias/rel_embedding"] = (heads, buckets)
    for i in range(config.num_decoder_layers):
        layer = f"decoder/layers_{i}"
        shapes[f"{layer}/pre_self_attention_layer_norm/scale"] = (emb,)
        shapes.update(_attention_shapes(f"{layer}/self_attention", config))
        shapes[f"{layer}/pre_cross_attention_layer_norm/scale"] = (emb,)
        shapes.update(_attention_shapes(f"{layer}/encoder_decoder_attention", config))
        shapes[f"{layer}/pre_mlp_layer_norm/scale"] = (emb,)
        shapes.update(_mlp_shapes(f"{layer}/mlp", config))
    shapes["decoder/decoder_norm/scale"] = (emb,)
    if not config.logits_via_embedding:
        shapes["decoder/logits_dense/kernel"] = (emb, config.vocab_size)
    return shapes


def flatten(tree: Mapping[str, Any], prefix: str = "") -> FlatParams:
    """Nested dict of arrays -> {"a/b/c": array}.

    Args:
      tree: nested mappings whose leaves are arrays (flax FrozenDicts included).
      prefix: path of `tree` itself (used by the recursion).

    Returns:
      The flat mapping, in the tree's iteration order.
    """
    flat: FlatParams = {}
    for key, value in tree.items():
        path = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(flatten(value, path))
        else:
            flat[path] = value
    return flat


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """{"a/b/c": array} -> nested plain dicts (what flax `apply({"params": ...})` and Orbax take)."""
    tree: dict[str, Any] = {}
    for path, value in flat.items():
        node = tree
        *parents, leaf = path.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def describe_mismatches(found: Mapping[str, Shape], config: ModelConfig, *, source: str,
                        allowed_missing: tuple[str, ...] = ()) -> list[str]:
    """Compares found parameter shapes with what `config` needs.

    Args:
      found: path -> shape of the parameters a checkpoint provides (already in our layout).
      config: the model they are meant for.
      source: what the parameters came from, for the messages.
      allowed_missing: paths that may be absent (they will be initialised and reported).

    Returns:
      One human-readable line per problem (missing, unexpected, mis-shaped); empty when everything fits.
    """
    expected = expected_shapes(config)
    problems = []
    missing = [p for p in expected if p not in found and p not in allowed_missing]
    unexpected = [p for p in found if p not in expected]
    misshaped = [f"{p} {tuple(found[p])} (expected {expected[p]})"
                 for p in expected if p in found and tuple(found[p]) != expected[p]]
    if missing:
        problems.append(f"{source}: missing {len(missing)} parameter(s): {', '.join(missing)}")
    if unexpected:
        problems.append(f"{source}: unexpected {len(unexpected)} parameter(s): {', '.join(unexpected)}")
    if misshaped:
        problems.append(f"{source}: wrong shape for {len(misshaped)} parameter(s): {'; '.join(misshaped)}")
    return problems
