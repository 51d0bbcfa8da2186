"""class_jax.trainer."""
