"""Importing T5X checkpoints (Google's mT5 / T5.1.1 releases, or any T5X `examples/t5` model).

A T5X checkpoint is a msgpack train state {"version", "optimizer": {"target": params, "state": ...}}. Small ones
(e.g. T5X's own test data) are one self-contained file; the public mT5 checkpoints are a directory
`checkpoint_N/` whose `checkpoint` msgpack replaces each large array by a TensorStore spec (a dict with
"driver": "zarr" and a "kvstore" whose "path" is relative to that directory, e.g.
"target.encoder.layers_0.attention.key.kernel"), the array itself being a zarr folder beside it. Only the
`target` arrays are read; the optimizer state is skipped.

The parameter names are ours already (both follow `t5x/examples/t5/network.py`); the ModelConfig is inferred from
the shapes. Attention heads cannot be told from a kernel [emb, heads * head_dim], so they come from the user,
from a `config.gin` beside the checkpoint, or from the relative position table [heads, buckets].
"""

import ast
import dataclasses
import pathlib
import re
from typing import Any, Mapping, Optional

import numpy as np
import tensorstore as ts
from flax import serialization

from class_jax.checkpoints import import_report, param_layout
from class_jax.checkpoints.import_report import ImportedCheckpoint, ImportReport
from class_jax.runtime.errors import UserError
from class_jax.models.config import ModelConfig

MSGPACK_FILE = "checkpoint"
GIN_FILE = "config.gin"
# ModelConfig fields a T5X gin file may set on `network.T5Config` under the same name.
_GIN_FIELDS = ("num_heads", "head_dim", "mlp_activations", "dropout_rate", "logits_via_embedding",
               "relative_attention_num_buckets", "relative_attention_max_distance", "layer_norm_epsilon")
_GIN_BINDING = re.compile(r"^\s*(?:[\w.]+\.)?T5Config\.(\w+)\s*=\s*(.+?)\s*$")
_GIN_MACRO = re.compile(r"^\s*([A-Z][A-Z0-9_]*)\s*=\s*(.+?)\s*$")
_LAYER = re.compile(r"^(encoder|decoder)/layers_(\d+)/")


def _msgpack_file(path: pathlib.Path) -> pathlib.Path:
    path = pathlib.Path(path)
    if path.is_dir():
        path = path / MSGPACK_FILE
    if not path.is_file():
        raise UserError(f"{path}: no T5X checkpoint file (give the msgpack file or a checkpoint_N directory "
                        f"holding `{MSGPACK_FILE}`)")
    return path


def _is_tensorstore_spec(node: Any) -> bool:
    return isinstance(node, dict) and "driver" in node and ("kvstore" in node or "path" in node)


def _read_tensorstore(spec: Mapping[str, Any], base_dir: pathlib.Path, name: str) -> np.ndarray:
    """Reads one array a T5X msgpack refers to, relative to the checkpoint directory, in its stored dtype."""
    kvstore = spec.get("kvstore")
    # tensorstore < 0.1.14 wrote the path at the top level; gcs / gfile drivers name a copy that now lives here.
    relative = kvstore.get("path") if isinstance(kvstore, dict) else spec.get("path")
    if not relative:
        raise UserError(f"{base_dir}: tensorstore reference for {name} has no path: {dict(spec)}")
    location = base_dir / relative
    if not location.exists():
        raise UserError(f"{base_dir}: array {name} refers to {relative}, which is missing")
    # The stored metadata (.zarray) gives dtype, shape and chunks; only the location is taken from the spec.
    local_spec = {"driver": spec["driver"], "kvstore": {"driver": "file", "path": str(location)}}
    try:
        return np.asarray(ts.open(local_spec, open=True, read=True).result().read().result())
    except (ValueError, RuntimeError) as e:
        raise UserError(f"{location}: cannot read array {name}: {e}") from e


def _resolve(tree: Any, base_dir: pathlib.Path, report: ImportReport, prefix: str = "") -> Any:
    if isinstance(tree, dict) and not _is_tensorstore_spec(tree):
        return {key: _resolve(value, base_dir, report, f"{prefix}/{key}" if prefix else key)
                for key, value in tree.items()}
    array = _read_tensorstore(tree, base_dir, prefix) if _is_tensorstore_spec(tree) else tree
    if isinstance(array, np.ndarray):
        report.count_dtypes([array])
        return array.astype(np.float32)
    raise UserError(f"{base_dir}: parameter {prefix} is a {type(array).__name__}, not an array")


def read_t5x_params(path: pathlib.Path, report: ImportReport) -> param_layout.FlatParams:
    """The float32 parameters (`optimizer/target`) of a T5X checkpoint, flat.

    Args:
      path: the msgpack file, or the checkpoint_N directory holding it.
      report: counts the source dtypes.

    Returns:
      Flat path -> float32 array.

    Raises:
      UserError: not a T5X train state, or a referenced array that cannot be read.
    """
    msgpack_path = _msgpack_file(path)
    try:
        state = serialization.msgpack_restore(msgpack_path.read_bytes())
    except Exception as e:  # msgpack raises several unrelated types on garbage input
        raise UserError(f"{msgpack_path}: not a msgpack T5X checkpoint: {e}") from e
    if not isinstance(state, dict) or not isinstance(state.get("optimizer"), dict) or \
            "target" not in state["optimizer"]:
        keys = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise UserError(f"{msgpack_path}: expected a T5X train state with optimizer/target, found {keys}")
    report.notes.append(f"T5X checkpoint format version {state.get('version', 'unknown')}")
    target = _resolve(state["optimizer"]["target"], msgpack_path.parent, report)
    return param_layout.flatten(target)


def read_gin_values(checkpoint_path: pathlib.Path) -> dict[str, Any]:
    """`T5Config` bindings from a config.gin next to the checkpoint (or its parent, the model dir).

    Only literal values and literal macros (`NUM_HEADS = 6` ... `T5Config.num_heads = %NUM_HEADS`) are read; T5X
    gin files bind everything this importer needs that way.

    Returns:
      ModelConfig field -> value for the fields found.
    """
    checkpoint_path = pathlib.Path(checkpoint_path)
    base = checkpoint_path if checkpoint_path.is_dir() else checkpoint_path.parent
    gin_path = next((d / GIN_FILE for d in (base, base.parent) if (d / GIN_FILE).is_file()), None)
    if gin_path is None:
        return {}
    macros, bindings = {}, {}
    for line in gin_path.read_text().splitlines():
        line = line.split("#", 1)[0]
        if match := _GIN_BINDING.match(line):
            bindings[match.group(1)] = match.group(2)
        elif match := _GIN_MACRO.match(line):
            macros[match.group(1)] = match.group(2)
    values = {}
    for field in _GIN_FIELDS:
        text = bindings.get(field)
        if text is not None and text.startswith("%"):
            text = macros.get(text[1:])
        if text is None:
            continue
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            continue  # not a literal (a configurable reference): leave the field to inference
        values[field] = tuple(value) if isinstance(value, list) else value
    return values


def infer_config(shapes: Mapping[str, tuple[int, ...]], *, source: str, known: Mapping[str, Any],
                 report: ImportReport) -> ModelConfig:
    """A ModelConfig matching T5X parameter shapes.

    Args:
      shapes: flat path -> shape of the checkpoint's parameters.
      source: the checkpoint path, for messages.
      known: fields given by the user or gin (num_heads, mlp_activations, ...); they win over inference and are
        checked against the shapes.
      report: receives a note for every field that had to be assumed.

    Returns:
      The config (validated).

    Raises:
      UserError: required parameters missing, or heads that do not divide the attention width.
    """
    required = ("token_embedder/embedding", "encoder/relpos_bias/rel_embedding",
                "encoder/layers_0/attention/query/kernel", "encoder/layers_0/mlp/wo/kernel")
    absent = [p for p in required if p not in shapes]
    if absent:
        raise UserError(f"{source}: not a T5X encoder-decoder (missing {', '.join(absent)})")
    layers = {"encoder": set(), "decoder": set()}
    for path in shapes:
        if match := _LAYER.match(path):
            layers[match.group(1)].add(int(match.group(2)))
    vocab, emb = shapes["token_embedder/embedding"]
    heads_in_table, buckets = shapes["encoder/relpos_bias/rel_embedding"]
    num_heads = int(known.get("num_heads", heads_in_table))
    if num_heads != heads_in_table:
        raise UserError(f"{source}: num_heads={num_heads} but encoder/relpos_bias/rel_embedding has "
                        f"{heads_in_table} heads")
    inner = shapes["encoder/layers_0/attention/query/kernel"][1]
    if inner % num_heads:
        raise UserError(f"{source}: attention width {inner} is not divisible by num_heads={num_heads}")
    gated = "encoder/layers_0/mlp/wi_0/kernel" in shapes
    fields: dict[str, Any] = dict(
        vocab_size=vocab, emb_dim=emb, num_heads=num_heads, head_dim=inner // num_heads,
        mlp_dim=shapes["encoder/layers_0/mlp/wo/kernel"][0],
        num_encoder_layers=max(layers["encoder"]) + 1, num_decoder_layers=max(layers["decoder"], default=-1) + 1,
        relative_attention_num_buckets=buckets,
        logits_via_embedding="decoder/logits_dense/kernel" not in shapes,
        mlp_activations=("gelu", "linear") if gated else ("relu",))
    assumed = {"mlp_activations": f"{fields['mlp_activations']} (T5.1.1 / mT5)" if gated
               else f"{fields['mlp_activations']} (T5 v1.0)",
               "relative_attention_max_distance": ModelConfig.relative_attention_max_distance,
               "dropout_rate": ModelConfig.dropout_rate, "layer_norm_epsilon": ModelConfig.layer_norm_epsilon}
    for field, value in known.items():
        if field in fields and fields[field] != value and field != "num_heads":
            raise UserError(f"{source}: {field}={value!r} (given) contradicts the checkpoint's shapes "
                            f"({fields[field]!r})")
        fields[field] = value
    for field, value in assumed.items():
        if field not in known:
            report.notes.append(f"{field} not recoverable from the checkpoint: assumed {value}")
    if "encoder/retriever/query_proj/kernel" in shapes and "retriever_layer" not in known:
        report.notes.append("retriever present but its layer is not recorded in T5X checkpoints: default B = L // 2")
    config = ModelConfig(**fields)
    try:
        config.validate()
    except ValueError as e:
        raise UserError(f"{source}: {e}") from e
    return config


def load_t5x_checkpoint(path: pathlib.Path, *, num_heads: Optional[int] = None,
                        overrides: Optional[Mapping[str, Any]] = None, seed: int = 0) -> ImportedCheckpoint:
    """Imports a T5X checkpoint.

    Args:
      path: the msgpack file, or a checkpoint_N directory (tensorstore layout).
      num_heads: attention heads, when known; otherwise gin or the position-bias table decides.
      overrides: further ModelConfig fields (user's word wins over gin and inference).
      seed: seed for the pooled retriever when the checkpoint lacks it.

    Returns:
      The imported parameters, config and report.

    Raises:
      UserError: unreadable checkpoint, contradictory heads, or parameters that do not fit the config.
    """
    path = pathlib.Path(path)
    report = ImportReport(source=str(path), source_format="t5x")
    flat = read_t5x_params(path, report)
    known = dict(read_gin_values(path))
    if known:
        report.notes.append(f"from {GIN_FILE}: {known}")
    if overrides:
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(ModelConfig)})
        if unknown:
            raise UserError(f"unknown ModelConfig field(s) to override: {', '.join(unknown)}")
        known.update(overrides)
    if num_heads is not None:
        known["num_heads"] = num_heads
    config = infer_config({p: a.shape for p, a in flat.items()}, source=str(path), known=known, report=report)
    problems = param_layout.describe_mismatches({p: a.shape for p, a in flat.items()}, config, source=str(path),
                                                allowed_missing=param_layout.RETRIEVER_PARAMS)
    if problems:
        raise UserError(" | ".join(problems))
    import_report.add_new_parameters(flat, config, report, seed=seed)
    return ImportedCheckpoint(params=flat, config=config, report=report)
