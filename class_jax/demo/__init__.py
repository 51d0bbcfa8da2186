"""`class-jax demo`: the whole CLASS method on the generated multilingual wiki, with a report of each stage."""
