"""A persistent XLA compilation cache for a test module whose runs compile the same programs again."""

import contextlib
import pathlib
from typing import Iterator

import jax

_OPTIONS = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
            "jax_persistent_cache_min_entry_size_bytes")


@contextlib.contextmanager
def persistent_compilation_cache(directory: pathlib.Path) -> Iterator[None]:
    """Caches every compiled program under `directory` (also across jit objects), restoring the settings after."""
    previous = {name: getattr(jax.config, name) for name in _OPTIONS}
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    try:
        yield
    finally:
        for name, value in previous.items():
            jax.config.update(name, value)
