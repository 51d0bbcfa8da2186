"""class_jax.evaluation."""
