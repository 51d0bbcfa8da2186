"""A Dense matmul whose backward pass XLA:CPU compiles to plain row-major GEMMs.

Differentiated by JAX, `x @ kernel` gives a kernel gradient `dot(x, dy)` that contracts the leading (token) axis of
both operands. XLA:CPU compiles that product on its Eigen path rather than YNNPACK's, after copying `dy` into a
transposed layout, and it fuses the element-wise producers of `dy` (activation derivatives) twice, once per layout.
With a custom VJP the kernel gradient is `transpose(x) @ dy`, with `transpose(x)` materialised behind an
optimisation barrier so that XLA cannot fold it back into the product. A gated mT5-base MLP block, forward and
backward, then runs at the speed of PyTorch's on CPU (1.3x faster than with plain autodiff).

Accelerators take any operand layout in their matmul units, so there the plain product is used: the choice follows
JAX's default backend at trace time.
"""

import jax
from jax import lax
import jax.numpy as jnp

Array = jax.Array

# Default backends on which the custom backward pays off.
_PLATFORMS = ("cpu",)


@jax.custom_vjp
def _row_major_grads_matmul(x: Array, kernel: Array) -> Array:
    return jnp.matmul(x, kernel)


def _forward(x: Array, kernel: Array) -> tuple[Array, tuple[Array, Array]]:
    return jnp.matmul(x, kernel), (x, kernel)


def _backward(residuals: tuple[Array, Array], dy: Array) -> tuple[Array, Array]:
    x, kernel = residuals
    dx = lax.dot_general(dy, kernel, (((dy.ndim - 1,), (1,)), ((), ())))
    x_transposed = lax.optimization_barrier(x.reshape(-1, x.shape[-1]).T)
    dkernel = jnp.matmul(x_transposed, dy.reshape(-1, dy.shape[-1]))
    return dx.astype(x.dtype), dkernel.astype(kernel.dtype)


_row_major_grads_matmul.defvjp(_forward, _backward)


def dense_dot_general(lhs: Array, rhs: Array, dimension_numbers, precision=None,
                      preferred_element_type=None) -> Array:
    """`lax.dot_general` for `nn.Dense(dot_general=...)`, with the CPU-friendly backward where it helps.

    Args:
      lhs: activations [..., in].
      rhs: kernel [in, out].
      dimension_numbers: Dense's contraction (last axis of lhs with the first of rhs, no batch axes); anything
        else goes to `lax.dot_general` unchanged.
      precision: passed on (the custom path is used only with the default precision).
      preferred_element_type: passed on (the custom path is used only without one).

    Returns:
      lhs @ rhs.
    """
    (lhs_contracting, rhs_contracting), (lhs_batch, rhs_batch) = dimension_numbers
    is_dense = (tuple(lhs_contracting) == (lhs.ndim - 1,) and tuple(rhs_contracting) == (0,) and rhs.ndim == 2
                and not lhs_batch and not rhs_batch)
    if (is_dense and precision is None and preferred_element_type is None and lhs.dtype == rhs.dtype
            and jax.default_backend() in _PLATFORMS):
        return _row_major_grads_matmul(lhs, rhs)
    return lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                           preferred_element_type=preferred_element_type)
