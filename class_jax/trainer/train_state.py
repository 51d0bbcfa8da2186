"""The train state and its sharded initialisation.

Initialisation never materialises an unsharded copy: `jax.eval_shape` gives the boxed (logically annotated)
parameter shapes, the partitioner maps the logical names to mesh shardings, and the init function is jitted with
those shardings as `out_shardings`, so every device only ever builds its own shards (MaxText style).
"""

import dataclasses
from typing import Any, Mapping

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from class_jax.models.base import BaseModel
from class_jax.runtime import partitioning

PyTree = Any


@flax.struct.dataclass
class TrainState:
    """What one training step reads and writes.

    Attributes:
      step: number of optimizer steps taken (int32 scalar).
      params: the unboxed parameters (float32).
      opt_state: the optax state.
    """

    step: jax.Array
    params: PyTree
    opt_state: optax.OptState


@dataclasses.dataclass(frozen=True)
class StateLayout:
    """Shapes and placement of a TrainState, known before anything is allocated.

    Attributes:
      abstract_state: TrainState of jax.ShapeDtypeStruct leaves carrying their shardings.
      shardings: TrainState of NamedShardings.
      param_logical_specs: the logical PartitionSpec of every parameter (for reports and tests).
      input_shapes: the global batch shapes the model was initialised for.
    """

    abstract_state: TrainState
    shardings: TrainState
    param_logical_specs: PyTree
    input_shapes: Mapping[str, tuple[int, ...]]


def _opt_state_shardings(transform: optax.GradientTransformation, abstract_opt_state: PyTree,
                         abstract_params: PyTree, param_shardings: PyTree,
                         replicated: jax.sharding.NamedSharding) -> PyTree:
    """Optimizer-state leaves shaped like their parameter share its sharding; the rest is replicated.

    Adam moments are parameter-shaped; Adafactor's factored statistics (row / column vectors) and counters are small
    and replicated.
    """

    def for_param_slot(state_leaf: Any, param: jax.ShapeDtypeStruct, sharding: jax.sharding.NamedSharding) -> Any:
        if hasattr(state_leaf, "shape") and tuple(state_leaf.shape) == tuple(param.shape):
            return sharding
        return replicated

    def is_array_like(x: Any) -> bool:
        return isinstance(x, jax.ShapeDtypeStruct)

    shardings = optax.tree_utils.tree_map_params(
        transform, for_param_slot, abstract_opt_state, abstract_params, param_shardings,
        transform_non_params=lambda _: replicated, is_leaf=is_array_like)
    # Empty states (optax.EmptyState) and masked placeholders carry no arrays; anything not a sharding by now is one.
    return jax.tree_util.tree_map(lambda x: x if isinstance(x, jax.sharding.Sharding) else replicated, shardings,
                                  is_leaf=lambda x: isinstance(x, jax.sharding.Sharding))


def build_state_layout(model: BaseModel, transform: optax.GradientTransformation,
                       partitioner: partitioning.Partitioner, input_shapes: Mapping[str, tuple[int, ...]],
                       input_types: Mapping[str, Any] | None = None) -> StateLayout:
    """Derives the sharded layout of the train state without allocating it.

    Args:
      model: the model.
      transform: the optax transformation.
      partitioner: mesh and rules.
      input_shapes: global batch shapes per feature.
      input_types: feature dtypes (int32 when absent).

    Returns:
      The layout.
    """
    rng = jax.random.key(0)
    boxed = jax.eval_shape(lambda r: model.get_initial_variables(r, input_shapes, input_types)["params"], rng)
    logical_specs = partitioning.param_logical_specs(boxed)
    param_shardings = partitioner.logical_to_mesh_sharding(logical_specs)
    abstract_params = nn.unbox(boxed)
    abstract_opt_state = jax.eval_shape(transform.init, abstract_params)
    opt_shardings = _opt_state_shardings(transform, abstract_opt_state, abstract_params, param_shardings,
                                         partitioner.replicated)
    shardings = TrainState(step=partitioner.replicated, params=param_shardings, opt_state=opt_shardings)
    abstract = TrainState(step=jax.ShapeDtypeStruct((), jnp.int32), params=abstract_params,
                          opt_state=abstract_opt_state)
    abstract = jax.tree_util.tree_map(
        lambda leaf, sharding: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding), abstract, shardings)
    return StateLayout(abstract_state=abstract, shardings=shardings, param_logical_specs=logical_specs,
                       input_shapes=dict(input_shapes))


def init_train_state(model: BaseModel, transform: optax.GradientTransformation,
                     partitioner: partitioning.Partitioner, layout: StateLayout, rng: jax.Array,
                     input_types: Mapping[str, Any] | None = None) -> TrainState:
    """Initialises a fresh, sharded train state (step 0).

    Args:
      model: the model.
      transform: the optax transformation.
      partitioner: mesh and rules.
      layout: from `build_state_layout`.
      rng: PRNG key for parameter initialisation.
      input_types: feature dtypes (int32 when absent).

    Returns:
      The state, each leaf placed as `layout.shardings` says.
    """

    def init(key: jax.Array) -> TrainState:
        params = nn.unbox(model.get_initial_variables(key, layout.input_shapes, input_types)["params"])
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=transform.init(params))

    with partitioner.activate():
        return jax.jit(init, out_shardings=layout.shardings)(rng)


def reinit_opt_state(transform: optax.GradientTransformation, partitioner: partitioning.Partitioner,
                     layout: StateLayout, params: PyTree, step: int = 0) -> TrainState:
    """A train state around given (already placed) params with a fresh optimizer state."""
    with partitioner.activate():
        opt_state = jax.jit(transform.init, out_shardings=layout.shardings.opt_state)(params)
    step_array = partitioning.global_array_from_host(np.asarray(step, np.int32), layout.shardings.step)
    return TrainState(step=step_array, params=params, opt_state=opt_state)


def build_param_layout(model: BaseModel, partitioner: partitioning.Partitioner,
                       input_shapes: Mapping[str, tuple[int, ...]],
                       input_types: Mapping[str, Any] | None = None) -> tuple[PyTree, PyTree]:
    """(abstract parameters carrying their shardings, NamedShardings) — the parameters alone, for inference."""
    boxed = jax.eval_shape(lambda r: model.get_initial_variables(r, input_shapes, input_types)["params"],
                           jax.random.key(0))
    shardings = partitioner.logical_to_mesh_sharding(partitioning.param_logical_specs(boxed))
    abstract = jax.tree_util.tree_map(lambda leaf, sharding: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype,
                                                                                  sharding=sharding),
                                      nn.unbox(boxed), shardings)
    return abstract, shardings
