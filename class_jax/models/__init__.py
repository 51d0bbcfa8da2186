"""class_jax.models."""
