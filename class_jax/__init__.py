"""class_jax: CLASS cross-lingual open-domain QA in JAX/Flax."""

__version__ = "0.1.0"
