"""Writing a directory so that readers see either nothing, the old one, or the complete new one."""

import contextlib
import pathlib
import shutil
import uuid
from typing import Iterator

from class_jax.runtime.errors import UserError


@contextlib.contextmanager
def staged_directory(directory: pathlib.Path, overwrite: bool = False) -> Iterator[pathlib.Path]:
    """Yields a temporary sibling of `directory` to fill; renames it into place when the block succeeds.

    The sibling lives in the same parent (so the rename stays on one file system) under a hidden name; it is
    deleted if the block raises. An existing `directory` is moved aside only after the new one is complete.

    Args:
      directory: the final location.
      overwrite: allow replacing an existing directory.

    Yields:
      The staging directory (empty, created).

    Raises:
      UserError: `directory` exists and overwrite is False.
    """
    directory = pathlib.Path(directory).absolute()
    if directory.exists() and not overwrite:
        raise UserError(f"{directory} already exists (pass overwrite / --overwrite to replace it)")
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = directory.parent / f".{directory.name}.tmp-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        yield staging
        if directory.exists():
            retired = directory.parent / f".{directory.name}.old-{uuid.uuid4().hex[:8]}"
            directory.rename(retired)
            staging.rename(directory)
            shutil.rmtree(retired)
        else:
            staging.rename(directory)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
