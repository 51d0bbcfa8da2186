"""class_jax.retrieval."""
