"""SeqIO tasks and mixtures of class_jax (installed as `class_jax.tasks`)."""
