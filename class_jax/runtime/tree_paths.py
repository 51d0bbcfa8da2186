"""'/'-joined parameter paths ("encoder/layers_0/attention/query/kernel") for pytrees of nested dicts."""

from typing import Any, Callable

import jax

PyTree = Any


def key_to_str(key: Any) -> str:
    """One path entry (DictKey, GetAttrKey, SequenceKey, FlattenedIndexKey) as a string."""
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def path_to_str(path: tuple[Any, ...]) -> str:
    """A jax key path as 'a/b/c'."""
    return "/".join(key_to_str(k) for k in path)


def flatten_with_paths(tree: PyTree, is_leaf: Callable[[Any], bool] | None = None) -> dict[str, Any]:
    """'a/b/c' -> leaf, in tree order."""
    flat = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_leaf)[0]
    return {path_to_str(path): leaf for path, leaf in flat}


def map_with_paths(fn: Callable[[str, Any], Any], tree: PyTree) -> PyTree:
    """Like tree_map, with the '/'-joined path passed first."""
    return jax.tree_util.tree_map_with_path(lambda path, leaf: fn(path_to_str(path), leaf), tree)
