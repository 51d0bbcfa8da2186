"""The CPU-friendly Dense backward: same values and gradients as plain autodiff, used only where it applies."""

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import pytest

from class_jax.models import dense_grads

DENSE = (((2,), (0,)), ((), ()))


def _loss(dot_general, x, kernel):
    y = dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())))
    # A non-linear loss, so that the incoming gradient differs per element.
    return jnp.sum(jnp.tanh(y.astype(jnp.float32)) * jnp.arange(y.shape[-1], dtype=jnp.float32))


@pytest.mark.parametrize("shape", [(6, 8), (2, 5, 8)])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_values_and_gradients_match_autodiff(shape, dtype):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=shape), dtype)
    kernel = jnp.asarray(rng.normal(size=(shape[-1], 16)) / 3, dtype)
    value_and_grads = jax.jit(jax.value_and_grad(_loss, argnums=(1, 2)), static_argnums=0)
    # The exact answer for these inputs: plain autodiff in float32.
    exact = value_and_grads(lax.dot_general, x.astype(jnp.float32), kernel.astype(jnp.float32))
    plain = value_and_grads(lax.dot_general, x, kernel)
    custom = value_and_grads(dense_grads.dense_dot_general, x, kernel)
    for want, baseline, got in zip(jax.tree.leaves(exact), jax.tree.leaves(plain), jax.tree.leaves(custom)):
        assert got.dtype == baseline.dtype and got.shape == baseline.shape
        # In float32 both are exact to rounding; in bfloat16 the custom backward is as close as autodiff's.
        baseline_error = np.max(np.abs(np.asarray(baseline, np.float32) - np.asarray(want)))
        error = np.max(np.abs(np.asarray(got, np.float32) - np.asarray(want)))
        assert error <= 2 * baseline_error + 1e-5 * np.max(np.abs(np.asarray(want)))


def test_custom_backward_is_what_runs_on_cpu():
    x, kernel = jnp.ones((2, 5, 8)), jnp.ones((8, 16))
    backward = jax.jit(jax.grad(lambda k: jnp.sum(dense_grads.dense_dot_general(x, k, DENSE)))).lower(kernel)
    assert "optimization_barrier" in backward.as_text()


@pytest.mark.parametrize("call", [
    lambda x, k: dense_grads.dense_dot_general(x, k, DENSE, precision=lax.Precision.HIGHEST),
    lambda x, k: dense_grads.dense_dot_general(x, k, DENSE, preferred_element_type=jnp.float32),
    lambda x, k: dense_grads.dense_dot_general(x, k.T, (((2,), (1,)), ((), ()))),  # not Dense's contraction
])
def test_other_contractions_and_options_are_plain_dot_general(call):
    x, kernel = jnp.ones((2, 5, 8)), jnp.ones((8, 16))
    backward = jax.jit(jax.grad(lambda k: jnp.sum(call(x, k)))).lower(kernel)
    assert "optimization_barrier" not in backward.as_text()
    np.testing.assert_allclose(call(x, kernel), jnp.full((2, 5, 16), 8.0))


def test_flax_dense_uses_it():
    module = nn.Dense(4, use_bias=False, dot_general=dense_grads.dense_dot_general)
    x = jnp.arange(12.0).reshape(3, 4)
    params = module.init(jax.random.PRNGKey(0), x)
    grads = jax.grad(lambda p: jnp.sum(module.apply(p, x) ** 2))(params)
    kernel = params["params"]["kernel"]
    np.testing.assert_allclose(grads["params"]["kernel"], 2 * x.T @ (x @ kernel), rtol=1e-5)
