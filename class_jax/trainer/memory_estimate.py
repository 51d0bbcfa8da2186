"""Per-device memory of a training step, estimated before anything is allocated or compiled.

`class-jax train` prints this estimate at start and refuses a configuration that cannot fit the device;
`--gin.train_script.train.dry_run=True` prints it and exits without reading data, allocating or compiling.

The estimate has four parts, all per device:

* parameters and optimizer state: exact, from the abstract train state (`train_state.build_state_layout`, i.e.
  `jax.eval_shape`) and its shardings: each leaf's shard shape times its dtype size.
* gradients: one float32 parameter-shaped tree placed like the parameters; with NUM_MICROBATCHES > 1 two (the
  accumulator carried through the loop and one microbatch's gradients).
* activations: the analytic formula below, for the rows one device processes in one microbatch,
  b = ceil(batch / (NUM_MICROBATCHES x batch shards)), where the batch shards are the mesh's 'data' x 'fsdp' axes
  (twice that in stage 1, whose every query is an English and a target-language chunk). A stage-1 neural teacher's
  parameters and its no-gradient forward pass are not counted.
  Tensor-parallel ('model') devices split heads, MLP hidden units and the vocabulary.
* the batch itself (its int32 / float32 features, split like the activations).

Activation formula (bytes per row). Notation: d = emb_dim, I = num_heads x head_dim, H = num_heads, F = mlp_dim,
n = number of MLP input branches (2 for gated GELU), s = bytes of the compute dtype (4 float32, 2 bfloat16),
p = bytes per attention-probability element kept for the backward pass = 4 (float32 softmax) + s (the probabilities
cast for the PV product) [+ 5 with attention dropout: its mask and the dropped probabilities], t = tensor-parallel
degree. One transformer layer over T tokens whose attention spans S keys keeps, without rematerialisation,

    full(T, S)    = T * s * (C_D * d + C_I * I / t + C_F * F / t)  +  T * S * H / t * p

with C_D = 6 (the layer input, its normed copy, the attention output, the residual, the MLP's normed input, the
MLP output), C_I = 4 (query, key, value, context) and C_F = 2n + 1 (each branch before and after its activation,
and their product); a decoder layer adds its cross-attention: the same terms for La queries over k * L keys, plus
the keys and values of the k * L encoded positions (2 * k * L * I / t * s). What a layer keeps until the backward
pass depends on the remat policy:

    none      full(T, S)
    minimal   T * s * (2 d + (3 I + n F) / t + d)     the matmul outputs without batch dimensions, plus the input
    full      T * s * d                               the layer input only

and a rematerialised stack needs one layer's `full` on top, while that layer is recomputed in the backward pass.
Per FiD row (k passages, query Lq, passage Lp, L = Lq + Lp, answer La, vocabulary V; encoder layers [0, B) see
queries and passages apart, [B, L_enc) the pairs):

    encoder   = B * (kept(Lq, Lq) + k * kept(Lp, Lp)) + (L_enc - B) * k * kept(L, L)
    decoder   = L_dec * kept_dec(La; self over La, cross over k * L)
    outputs   = k * L * d * s * 2  (the encoded pairs and their normed copy, held through the decoder)
                + 3 * La * V / t * 4  (float32 logits, their log-softmax and its gradient)

    activations = b * (encoder + decoder + outputs + recompute peak)

Stage 1 (CLR-PT) also encodes the English query up to layer B (a few Lq-token layers; counted with the queries).
The formula is checked against XLA's own buffer assignment (`compiled.memory_analysis()`) at small shapes on CPU in
tests/trainer/memory_estimate_test.py; bench/RESULTS.md has the figures. It is an estimate: XLA fuses and
reorders, so real peaks differ by some percent either way, and the check refuses only configurations whose
estimate exceeds the device's memory.
"""

import dataclasses
import logging
import math
import os
from typing import Any, Mapping, Optional

import jax
import numpy as np

from class_jax.runtime.errors import UserError
from class_jax.runtime import stages

PyTree = Any
GIB = 2 ** 30

# Per-token coefficients of one layer's kept activations without remat (see the module docstring).
C_D = 6
C_I = 4
LOGITS_COPIES = 3


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per device of one training step.

    Attributes:
      params: parameters (after sharding).
      opt_state: optimizer state (after sharding).
      grads: gradients (and the microbatch accumulator).
      activations: activations kept for the backward pass, at the configured remat policy and dtype.
      batch: the input batch.
      device_limit: the device's memory (None: unknown).
      limit_source: where `device_limit` came from.
      rows_per_device: FiD rows one device processes per microbatch.
      details: the activation terms (name -> bytes), for reports.
    """

    params: int
    opt_state: int
    grads: int
    activations: int
    batch: int
    device_limit: Optional[int]
    limit_source: str
    rows_per_device: int
    details: Mapping[str, int] = dataclasses.field(default_factory=dict)

    @property
    def total(self) -> int:
        """Everything, per device."""
        return self.params + self.opt_state + self.grads + self.activations + self.batch

    @property
    def fits(self) -> bool:
        """Whether the total fits the device (True when the device's memory is unknown)."""
        return self.device_limit is None or self.total <= self.device_limit

    def summary(self) -> str:
        """One line: the parts and the total against the device's memory."""
        limit = "unknown" if self.device_limit is None else f"{_size(self.device_limit)} ({self.limit_source})"
        share = "" if not self.device_limit else f", {self.total / self.device_limit:.0%} of it"
        return (f"per-device memory estimate: parameters {_size(self.params)} + optimizer state "
                f"{_size(self.opt_state)} + gradients {_size(self.grads)} + activations {_size(self.activations)} "
                f"({self.rows_per_device} row(s) per device per microbatch) + batch {_size(self.batch)} = "
                f"{_size(self.total)}; device memory {limit}{share}")


def _size(num_bytes: float) -> str:
    return f"{num_bytes / GIB:.2f} GiB" if num_bytes >= GIB / 4 else f"{num_bytes / 2 ** 20:.1f} MiB"


def _leaf_bytes_per_device(leaf: Any) -> int:
    shape = tuple(leaf.shape)
    sharding = getattr(leaf, "sharding", None)
    if sharding is not None:
        shape = tuple(sharding.shard_shape(shape))
    return int(math.prod(shape)) * np.dtype(leaf.dtype).itemsize


def tree_bytes_per_device(tree: PyTree) -> int:
    """Bytes one device holds of a tree of (sharded) jax.ShapeDtypeStruct / arrays."""
    return sum(_leaf_bytes_per_device(leaf) for leaf in jax.tree_util.tree_leaves(tree) if hasattr(leaf, "shape"))


def device_memory_limit(device: Optional[jax.Device] = None) -> tuple[Optional[int], str]:
    """(bytes, source) of one device's memory: XLA's `bytes_limit`, the host RAM on CPU, else (None, "unknown")."""
    device = device or jax.local_devices()[0]
    try:
        stats = device.memory_stats()
    except Exception:  # pylint: disable=broad-except  (backends without memory stats raise various errors)
        stats = None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"]), f"{device.platform} bytes_limit"
    if device.platform == "cpu":
        try:
            return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")), "host RAM"
        except (ValueError, OSError, AttributeError):
            pass
    return None, "unknown"


def _mesh_degree(partitioner: Any, axes: tuple[str, ...]) -> int:
    mesh = getattr(partitioner, "mesh", None)
    if mesh is None:
        return 1
    return int(math.prod(mesh.shape.get(axis, 1) for axis in axes))


def _model_shards(partitioner: Any) -> int:
    """The tensor-parallel degree: the 'model' axis, when the rules put heads / MLP on it."""
    rules = dict(getattr(partitioner, "logical_axis_rules", ()) or ())
    if rules.get("heads") == "model" or rules.get("mlp") == "model":
        return _mesh_degree(partitioner, ("model",))
    return 1


def _batch_axes(partitioner: Any) -> tuple[str, ...]:
    rules = dict(getattr(partitioner, "logical_axis_rules", ()) or ())
    axes = rules.get("batch", ("data", "fsdp"))
    return (axes,) if isinstance(axes, str) else tuple(axes)


def activation_bytes_per_row(config: Any, input_shapes: Mapping[str, tuple[int, ...]],
                             model_shards: int = 1) -> dict[str, int]:
    """The activation terms of one FiD row (see the module docstring), name -> bytes.

    Args:
      config: the ModelConfig (sizes, dtype, remat_policy, dropout).
      input_shapes: global batch shapes ("query_tokens" [B, Lq], "passage_tokens" [B, k, Lp],
        "decoder_input_tokens" [B, La]; "english_query_tokens" for stage 1).
      model_shards: the tensor-parallel degree.

    Returns:
      {"encoder", "decoder", "outputs", "recompute"} bytes per row.
    """
    _, k, passage_len = input_shapes["passage_tokens"]
    query_len = input_shapes["query_tokens"][1]
    answer_len = input_shapes["decoder_input_tokens"][1]
    pair_len = query_len + passage_len
    s = 2 if config.dtype == "bfloat16" else 4
    t = max(1, model_shards)
    d, heads, inner, ffn = config.emb_dim, config.num_heads, config.num_heads * config.head_dim, config.mlp_dim
    branches = len(config.mlp_activations)
    attention_dropout = config.attention_dropout_rate if config.attention_dropout_rate is not None \
        else config.dropout_rate
    p = 4 + s + (5 if attention_dropout > 0 else 0)
    c_f = 2 * branches + 1
    policy = config.remat_policy

    def full(tokens: int, keys: int, cross_keys: int = 0) -> float:
        dense = tokens * s * (C_D * d + C_I * inner / t + c_f * ffn / t)
        attention = tokens * (keys + cross_keys) * heads / t * p
        if cross_keys:  # the cross-attention's query, context, output and norm, and the encoded keys / values
            dense += tokens * s * (2 * d + 2 * inner / t) + 2 * cross_keys * inner / t * s
        return dense + attention

    def kept(tokens: int, keys: int, cross_keys: int = 0) -> float:
        if policy == "none":
            return full(tokens, keys, cross_keys)
        if policy == "minimal":
            dense = tokens * s * (2 * d + (3 * inner + branches * ffn) / t + d)
            if cross_keys:
                dense += tokens * s * (inner / t + d) + 2 * cross_keys * inner / t * s
            return dense
        return tokens * s * d

    lower = config.retriever_layer_index
    upper = config.num_encoder_layers - lower
    query_sides = 2 if "english_query_tokens" in input_shapes else 1
    encoder = lower * (query_sides * kept(query_len, query_len) + k * kept(passage_len, passage_len))
    encoder += upper * k * kept(pair_len, pair_len)
    cross = k * pair_len
    decoder = config.num_decoder_layers * kept(answer_len, answer_len, cross)
    outputs = 2 * cross * d * s + LOGITS_COPIES * answer_len * config.vocab_size / t * 4
    recompute = 0.0
    if policy != "none":
        recompute = max(k * full(pair_len, pair_len), full(answer_len, answer_len, cross))
    return {"encoder": int(encoder), "decoder": int(decoder), "outputs": int(outputs), "recompute": int(recompute)}


def estimate(model: Any, abstract_state: Any, partitioner: Any, input_shapes: Mapping[str, tuple[int, ...]],
             num_microbatches: int = 1, device_limit: Optional[int] = None,
             input_types: Optional[Mapping[str, Any]] = None) -> MemoryEstimate:
    """The per-device memory estimate of a training step.

    Args:
      model: the model; its `config` (a ModelConfig) gives the activation formula. A model without one is counted
        with parameters, optimizer state, gradients and batch only.
      abstract_state: the TrainState of sharded jax.ShapeDtypeStruct (`StateLayout.abstract_state`).
      partitioner: mesh and logical-axis rules.
      input_shapes: global batch shapes per feature.
      num_microbatches: gradient-accumulation steps per batch.
      device_limit: the device's memory in bytes; None looks it up (`device_memory_limit`).
      input_types: feature dtypes (int32 when absent).

    Returns:
      The estimate.
    """
    params = tree_bytes_per_device(abstract_state.params)
    opt_state = tree_bytes_per_device(abstract_state.opt_state) + tree_bytes_per_device(abstract_state.step)
    param_float32 = sum(_leaf_bytes_per_device(leaf) // np.dtype(leaf.dtype).itemsize * 4
                        for leaf in jax.tree_util.tree_leaves(abstract_state.params))
    grads = param_float32 * (2 if num_microbatches > 1 else 1)
    batch_shards = max(1, _mesh_degree(partitioner, _batch_axes(partitioner)))
    global_batch = next(iter(input_shapes.values()))[0] if input_shapes else 1
    rows = max(1, math.ceil(global_batch / (num_microbatches * batch_shards)))
    if getattr(getattr(model, "loss_config", None), "stage", None) is stages.Stage.CLR_PT:
        rows *= 2  # stage 1 runs every query twice: its English and its target-language chunk (models/clr_pt.py)
    input_types = input_types or {}
    batch_bytes = sum(math.prod(shape[1:]) * np.dtype(input_types.get(name, np.int32)).itemsize
                      for name, shape in input_shapes.items()) * math.ceil(global_batch / batch_shards)
    config = getattr(model, "config", None)
    details: dict[str, int] = {}
    activations = 0
    if config is not None and {"passage_tokens", "query_tokens", "decoder_input_tokens"} <= set(input_shapes):
        per_row = activation_bytes_per_row(config, input_shapes, _model_shards(partitioner))
        details = {name: value * rows for name, value in per_row.items()}
        activations = sum(details.values())
    source = "given"
    if device_limit is None:
        device_limit, source = device_memory_limit()
    return MemoryEstimate(params=params, opt_state=opt_state, grads=grads, activations=activations,
                          batch=batch_bytes, device_limit=device_limit, limit_source=source, rows_per_device=rows,
                          details=details)


def refusal(result: MemoryEstimate, num_microbatches: int, remat_policy: Optional[str]) -> str:
    """The one-line message refusing a configuration that cannot fit, naming the knobs to turn."""
    knobs = []
    if result.rows_per_device > 1:
        knobs.append(f"raise NUM_MICROBATCHES (now {num_microbatches}; each microbatch then holds fewer than "
                     f"{result.rows_per_device} rows per device)")
    if remat_policy in ("none", "minimal"):
        knobs.append(f"rematerialise more (REMAT_POLICY='full' via runs/remat.gin; now {remat_policy!r})")
    knobs.append("shard the parameters over more devices (sharding/fsdp.gin or fsdp_tp.gin with a larger "
                 "MODEL_PARALLELISM)")
    knobs.append("lower BATCH_SIZE or NUM_PASSAGES")
    return (f"this training configuration does not fit the device: {result.summary()}. To fit it: "
            + "; ".join(knobs) + " (or set train_script.train.check_memory=False to try anyway)")


def check_training_memory(model: Any, abstract_state: Any, partitioner: Any,
                          input_shapes: Mapping[str, tuple[int, ...]], num_microbatches: int = 1,
                          device_limit: Optional[int] = None, refuse: bool = True,
                          input_types: Optional[Mapping[str, Any]] = None) -> MemoryEstimate:
    """Logs the estimate (and prints it on the first process) and refuses a configuration that cannot fit.

    Args:
      model / abstract_state / partitioner / input_shapes / num_microbatches / device_limit / input_types: see
        `estimate`.
      refuse: raise when it does not fit (False: warn only).

    Returns:
      The estimate.

    Raises:
      UserError: the estimate exceeds the device's memory and `refuse` (one line naming the knobs to turn).
    """
    result = estimate(model, abstract_state, partitioner, input_shapes, num_microbatches, device_limit, input_types)
    if jax.process_index() == 0:
        print(result.summary(), flush=True)
    logging.info("%s", result.summary())
    if not result.fits:
        remat = getattr(getattr(model, "config", None), "remat_policy", None)
        message = refusal(result, num_microbatches, remat)
        if refuse:
            raise UserError(message)
        logging.warning("%s", message)
    return result


def input_spec_from_dataset_config(model: Any, dataset_cfg: Any) -> dict[str, tuple[tuple[int, ...], Any]]:
    """Feature -> (global shape, dtype) from a DatasetConfig's lengths and batch size, without reading data.

    The model's feature converter maps task feature lengths to model features (`get_model_feature_lengths`); a
    feature whose task length is a pair (k, Lp) is [batch, k, Lp]. Integer features are int32, "teacher_scores"
    float32.

    Raises:
      UserError: the dataset configuration gives no feature lengths or batch size (pass data, not a dry run).
    """
    lengths = getattr(dataset_cfg, "task_feature_lengths", None)
    batch = getattr(dataset_cfg, "batch_size", None)
    if not lengths or not batch:
        raise UserError("train_script.train.dry_run needs a DatasetConfig with task_feature_lengths and batch_size")
    from class_jax.trainer import data as data_lib  # pylint: disable=import-outside-toplevel
    if getattr(dataset_cfg, "module", None):
        import importlib  # pylint: disable=import-outside-toplevel
        importlib.import_module(dataset_cfg.module)
    converter = data_lib.feature_converter_for(model, getattr(dataset_cfg, "pack", False))
    model_lengths = converter.get_model_feature_lengths(dict(lengths))
    spec = {}
    for name, length in model_lengths.items():
        task_length = lengths.get(name)
        if isinstance(task_length, (tuple, list)):  # passage_tokens, teacher_passage_tokens
            shape = (batch, int(task_length[0]), int(task_length[1]))
        else:
            shape = (batch, int(length))
        spec[name] = (shape, np.float32 if name == "teacher_scores" else np.int32)
    return spec


def check_at_start(model: Any, optimizer: Any, partitioner: Any, train_dataset_cfg: Any, num_microbatches: int = 1,
                   device_memory_bytes: Optional[int] = None, refuse: bool = True,
                   required: bool = False) -> Optional[MemoryEstimate]:
    """What `train` runs first: the estimate for its configuration, printed, and refused if it cannot fit.

    Nothing is allocated or compiled: the train state comes from `jax.eval_shape`, and a DatasetConfig's batch
    shapes from its feature lengths and batch size (no data is read); any other data source gives its first batch's
    shapes (`data.peek_batch_spec`).

    Args:
      model: the model.
      optimizer: the trainer's Optimizer (its `transform` shapes the optimizer state).
      partitioner: mesh and logical-axis rules.
      train_dataset_cfg: `train`'s DatasetConfig or DataSource.
      num_microbatches: gradient-accumulation steps per batch.
      device_memory_bytes: the device memory to check against (None: the device's own, `device_memory_limit`).
      refuse: raise when the estimate exceeds it (False: warn).
      required: a configuration that cannot be sized (its shapes or state cannot be derived) raises; otherwise it
        is logged and skipped (None).

    Returns:
      The estimate, or None when it could not be made and not `required`.

    Raises:
      UserError: it does not fit and `refuse` (one line naming NUM_MICROBATCHES, the remat policy, the sharding
        and the batch size).
    """
    # Imported here: train_state imports flax / optax, data imports the SeqIO side lazily.
    from class_jax.trainer import data as data_lib  # pylint: disable=import-outside-toplevel
    from class_jax.trainer import train_state as train_state_lib  # pylint: disable=import-outside-toplevel
    try:
        if isinstance(train_dataset_cfg, data_lib.DatasetConfig):
            spec = input_spec_from_dataset_config(model, train_dataset_cfg)
        else:
            source = data_lib.as_data_source(train_dataset_cfg, model)
            spec = data_lib.peek_batch_spec(source, partitioner.host_batch_shard(source.global_batch_size))
        input_shapes = {name: shape for name, (shape, _) in spec.items()}
        input_types = {name: dtype for name, (_, dtype) in spec.items()}
        layout = train_state_lib.build_state_layout(model, optimizer.transform, partitioner, input_shapes,
                                                    input_types)
    except Exception as error:  # pylint: disable=broad-except  (the estimate must not stop a job it cannot size)
        if required:
            raise
        logging.warning("No memory estimate for this configuration (%s: %s); training without the check.",
                        type(error).__name__, error)
        return None
    return check_training_memory(model, layout.abstract_state, partitioner, input_shapes, num_microbatches,
                                 device_memory_bytes, refuse, input_types)
