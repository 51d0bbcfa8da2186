"""class_jax.data."""
