"""`class-jax eval-*` commands: thin wrappers that read files, call the scorers and print their reports."""
