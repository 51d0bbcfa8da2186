"""Device mesh and logical-axis partitioning (Flax / MaxText style).

A `Partitioner` owns a `jax.sharding.Mesh` with axes ('data', 'fsdp', 'model') and a list of logical-axis rules
mapping the canonical logical names (batch, length, embed, mlp, heads, kv, joined_kv, vocab, relpos_buckets) to mesh
axes. Models annotate parameters with `nn.with_logical_partitioning` and activations with
`nn.with_logical_constraint`; which logical axis lands on which mesh axis is decided here, from gin
(gin/sharding/*.gin), never in model code.

Batches: every process feeds only the rows of the global batch its own devices hold; `host_batch_shard` says which
rows those are (so data loaders can shard per host) and `shard_batch` assembles global `jax.Array`s from them.
"""

import contextlib
import dataclasses
import logging
import math
from typing import Any, Iterator, Mapping, Sequence

import flax.linen as nn
import jax
from jax.experimental import mesh_utils
import numpy as np

from class_jax.runtime import tree_paths

PyTree = Any
LogicalRules = Sequence[tuple[str, str | tuple[str, ...] | None]]

MESH_AXIS_NAMES = ("data", "fsdp", "model")

# XLA:CPU options for forward-only (inference) computations. jaxlib 0.10's default YNNPACK fusions fold each attention
# block (batched QK^T, softmax, PV over [batch, heads, length, length]) into one kernel that runs several times slower
# than XLA's own loop fusions and Eigen matmuls on the same work; with them off, corpus encoding at mT5-small shapes
# runs about 1.4x faster (bench/encode.py; bench/RESULTS.md, "Measurements the code relies on"). An empty list
# disables them all.
CPU_INFERENCE_COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}
# XLA:CPU options for training steps. A step that donates its state updates every parameter in place, and XLA:CPU's
# default copy insertion copies the donated parameters first at mT5-base sizes (2.4 GB of copies per step, the
# [768, 250112] output projection among them); its region analysis proves the reads come before the update and
# drops them. Same results bit for bit, less memory traffic (bench/RESULTS.md, "Measurements the code relies on").
CPU_TRAINING_COMPILER_OPTIONS = {"xla_cpu_copy_insertion_use_region_analysis": True}

# Pure data parallelism: the batch is split over every device, every parameter is replicated. The gin files in
# gin/sharding/ override this; it is the default so that programmatic use needs no gin at all.
DATA_PARALLEL_RULES: LogicalRules = (
    ("batch", ("data", "fsdp")),
)


@dataclasses.dataclass(frozen=True)
class HostBatchShard:
    """The rows of each global batch that this process feeds.

    Attributes:
      index: which of the `num_shards` distinct row blocks this process holds (processes whose devices hold the same
        rows, e.g. when the 'model' axis spans hosts, get the same index and must read the same data).
      num_shards: number of distinct row blocks of a global batch across processes.
      local_batch_size: rows this process feeds per step.
      global_batch_size: rows of the global batch.
    """

    index: int
    num_shards: int
    local_batch_size: int
    global_batch_size: int


def resolve_mesh_shape(mesh_shape: Sequence[int], num_devices: int) -> tuple[int, ...]:
    """Fills one -1 entry of `mesh_shape` so that the product equals `num_devices`.

    Args:
      mesh_shape: sizes per mesh axis; at most one may be -1.
      num_devices: devices to lay out.

    Returns:
      The mesh shape with the -1 resolved.

    Raises:
      ValueError: if several axes are -1 or the sizes do not divide / multiply to `num_devices`.
    """
    shape = list(mesh_shape)
    unknown = [i for i, size in enumerate(shape) if size == -1]
    if len(unknown) > 1:
        raise ValueError(f"mesh shape {tuple(mesh_shape)}: at most one axis may be -1")
    known = math.prod(size for size in shape if size != -1)
    if unknown:
        if known <= 0 or num_devices % known:
            raise ValueError(f"mesh shape {tuple(mesh_shape)} does not divide {num_devices} devices")
        shape[unknown[0]] = num_devices // known
    if math.prod(shape) != num_devices:
        raise ValueError(f"mesh shape {tuple(shape)} holds {math.prod(shape)} devices, not {num_devices}")
    return tuple(shape)


class Partitioner:
    """A mesh plus logical-axis rules; everything the trainer needs to place arrays.

    Attributes:
      mesh: the global device mesh with axes ('data', 'fsdp', 'model').
      logical_axis_rules: the rules, highest priority first (flax semantics: a logical axis takes the first rule whose
        mesh axes are still free in that array).
    """

    def __init__(self,
                 mesh_shape: Sequence[int] = (-1, 1, 1),
                 logical_axis_rules: LogicalRules = DATA_PARALLEL_RULES,
                 dcn_mesh_shape: Sequence[int] | None = None,
                 dcn_granule: str = "slice",
                 allow_split_physical_axes: bool = False,
                 devices: Sequence[jax.Device] | None = None):
        """Builds the mesh.

        Args:
          mesh_shape: sizes of ('data', 'fsdp', 'model') within one slice (ICI); one entry may be -1 (fill).
          logical_axis_rules: pairs (logical axis name, mesh axis / tuple of mesh axes / None).
          dcn_mesh_shape: multi-slice / multi-host-group sizes of the same axes over the data-centre network
            (e.g. (2, 1, 1) for data parallelism across 2 TPU slices); None for a single slice. One entry may be -1.
          dcn_granule: what a DCN unit is: "slice" (TPU multi-slice, devices grouped by `slice_index`) or "process"
            (each process is a granule, e.g. GPU hosts).
          allow_split_physical_axes: let mesh_utils split physical torus axes to realise the mesh.
          devices: devices to use (all global devices by default).

        Raises:
          ValueError: for shapes that do not fit the devices.
        """
        devices = list(jax.devices() if devices is None else devices)
        self.logical_axis_rules: tuple[tuple[str, Any], ...] = tuple(
            (str(name), tuple(axes) if isinstance(axes, list) else axes) for name, axes in logical_axis_rules)
        self._check_rules()
        if dcn_granule not in ("slice", "process"):
            raise ValueError(f"dcn_granule={dcn_granule!r}: expected 'slice' or 'process'")
        if dcn_mesh_shape is None:
            dcn_shape, num_granules = (1,) * len(MESH_AXIS_NAMES), 1
        else:
            num_granules = (len({d.process_index for d in devices}) if dcn_granule == "process"
                            else len({getattr(d, "slice_index", 0) for d in devices}))
            dcn_shape = resolve_mesh_shape(dcn_mesh_shape, num_granules)
        ici_shape = resolve_mesh_shape(mesh_shape, len(devices) // num_granules)
        if num_granules == 1:
            # One slice / process: a hybrid mesh degenerates to the plain one (and CPU/GPU devices have no slices).
            device_grid = mesh_utils.create_device_mesh(
                ici_shape, devices, allow_split_physical_axes=allow_split_physical_axes)
        else:
            device_grid = mesh_utils.create_hybrid_device_mesh(
                ici_shape, dcn_shape, devices, process_is_granule=dcn_granule == "process",
                allow_split_physical_axes=allow_split_physical_axes)
        self.mesh = jax.sharding.Mesh(device_grid, MESH_AXIS_NAMES,
                                      axis_types=(jax.sharding.AxisType.Auto,) * len(MESH_AXIS_NAMES))
        logging.info("Mesh %s over %d devices; rules %s", dict(self.mesh.shape), self.mesh.size,
                     self.logical_axis_rules)

    def _check_rules(self) -> None:
        for name, axes in self.logical_axis_rules:
            for axis in (axes if isinstance(axes, tuple) else (axes,)):
                if axis is not None and axis not in MESH_AXIS_NAMES:
                    raise ValueError(f"logical axis rule ({name!r}, {axes!r}) names unknown mesh axis {axis!r}; "
                                     f"mesh axes are {MESH_AXIS_NAMES}")

    @contextlib.contextmanager
    def activate(self) -> Iterator[None]:
        """Context in which the mesh and rules are current (for tracing models that constrain activations)."""
        with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.logical_axis_rules):
            yield

    def inference_compiler_options(self) -> dict[str, Any]:
        """XLA compiler options for forward-only jitted functions on this mesh (`jax.jit(compiler_options=...)`).

        Returns:
          `CPU_INFERENCE_COMPILER_OPTIONS` when the mesh is made of CPU devices, else {} (the options are
          XLA:CPU's; other backends keep their defaults).
        """
        return self._cpu_only(CPU_INFERENCE_COMPILER_OPTIONS)

    def training_compiler_options(self) -> dict[str, Any]:
        """XLA compiler options for training steps on this mesh: `CPU_TRAINING_COMPILER_OPTIONS` on CPU devices,
        else {}."""
        return self._cpu_only(CPU_TRAINING_COMPILER_OPTIONS)

    def _cpu_only(self, options: dict[str, Any]) -> dict[str, Any]:
        if all(device.platform == "cpu" for device in self.mesh.devices.flat):
            return dict(options)
        return {}

    # ------------------------------------------------------------------ shardings
    def logical_to_mesh_sharding(self, logical_specs: PyTree) -> PyTree:
        """Maps a tree of logical PartitionSpecs to NamedShardings on this mesh."""
        return nn.logical_to_mesh_sharding(logical_specs, self.mesh, self.logical_axis_rules)

    def sharding_for_logical_axes(self, logical_axes: Sequence[str | None]) -> jax.sharding.NamedSharding:
        """The NamedSharding of one array whose dimensions carry these logical names."""
        spec = nn.logical_to_mesh_axes(tuple(logical_axes), self.logical_axis_rules)
        return jax.sharding.NamedSharding(self.mesh, spec)

    @property
    def replicated(self) -> jax.sharding.NamedSharding:
        """A sharding that puts a full copy on every device."""
        return jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec())

    def batch_sharding(self, ndim: int) -> jax.sharding.NamedSharding:
        """Sharding of a batch feature of rank `ndim`: 'batch' on dimension 0, the rest replicated."""
        return self.sharding_for_logical_axes(("batch",) + (None,) * (ndim - 1))

    def batch_shardings(self, batch_shapes: Mapping[str, Sequence[int]]) -> dict[str, jax.sharding.NamedSharding]:
        """Per-feature batch shardings for features of these shapes."""
        return {name: self.batch_sharding(len(shape)) for name, shape in batch_shapes.items()}

    # ------------------------------------------------------------------ batches
    def host_batch_shard(self, global_batch_size: int) -> HostBatchShard:
        """Which rows of a global batch this process must feed.

        Args:
          global_batch_size: rows of the global batch.

        Returns:
          This process's shard.

        Raises:
          ValueError: if the batch does not split evenly over the batch-sharding devices or a process's rows are not
            one contiguous block.
        """
        sharding = self.batch_sharding(1)
        batch_axes = sharding.spec[0] if len(sharding.spec) else None
        axes = batch_axes if isinstance(batch_axes, tuple) else (batch_axes,) if batch_axes else ()
        num_batch_shards = math.prod(self.mesh.shape[a] for a in axes)
        if global_batch_size % num_batch_shards:
            raise ValueError(f"global batch size {global_batch_size} is not divisible by the {num_batch_shards} "
                             f"batch shards of mesh {dict(self.mesh.shape)}")
        index_map = sharding.addressable_devices_indices_map((global_batch_size,))
        rows = sorted({(s[0].start or 0, global_batch_size if s[0].stop is None else s[0].stop)
                       for s in index_map.values()})
        start, stop = rows[0][0], rows[-1][1]
        covered = sum(b - a for a, b in rows)
        if covered != stop - start:
            raise ValueError(f"process {jax.process_index()} holds non-contiguous batch rows {rows}; reorder the mesh")
        local = stop - start
        return HostBatchShard(index=start // local, num_shards=global_batch_size // local,
                              local_batch_size=local, global_batch_size=global_batch_size)

    def shard_batch(self, local_batch: Mapping[str, np.ndarray], global_batch_size: int) -> dict[str, jax.Array]:
        """Assembles global arrays from this process's rows of each feature.

        Args:
          local_batch: feature -> this process's rows (as given by `host_batch_shard`).
          global_batch_size: rows of the global batch.

        Returns:
          feature -> global `jax.Array` sharded along 'batch'.
        """
        out = {}
        for name, value in local_batch.items():
            value = np.asarray(value)
            sharding = self.batch_sharding(value.ndim)
            out[name] = jax.make_array_from_process_local_data(
                sharding, value, (global_batch_size,) + value.shape[1:])
        return out


def global_array_from_host(value: np.ndarray, sharding: jax.sharding.Sharding) -> jax.Array:
    """A global array from a host value that every process holds in full (e.g. a step counter, a PRNG key).

    Unlike `jax.device_put`, this works for shardings spanning other processes' devices: each process places only
    the pieces its own devices hold.
    """
    value = np.asarray(value)
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def param_logical_specs(boxed_params: PyTree) -> PyTree:
    """The logical PartitionSpec of every parameter of a boxed (nn.LogicallyPartitioned) tree."""
    return nn.get_partition_spec(boxed_params)


def partition_specs_by_path(tree: PyTree) -> dict[str, jax.sharding.PartitionSpec]:
    """'/'-joined path -> PartitionSpec of every (NamedSharding-placed) array in a tree, for logs and tests."""
    return {path: leaf.sharding.spec for path, leaf in tree_paths.flatten_with_paths(tree).items()}
