"""class_jax.checkpoints."""
