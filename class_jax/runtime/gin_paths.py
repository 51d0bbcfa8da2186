"""Where the gin files live.

The repository's top-level `gin/` folder has no `__init__.py` on purpose: a regular package named `gin` at the
repository root would shadow the gin-config library whenever the root is on sys.path (`python -m pytest`,
`python -m class_jax.cli` run from a checkout). A wheel installs the folder as package data at `class_jax/gin/`;
a source checkout or editable install reads it beside the `class_jax/` package.
"""

import pathlib

import class_jax


def gin_dir() -> pathlib.Path:
    """The folder holding class_jax's gin files (models/, runs/, sharding/, stages/, demo/).

    Raises:
      FileNotFoundError: if neither an installed nor a source-checkout gin folder exists.
    """
    package_dir = pathlib.Path(class_jax.__file__).resolve().parent
    for candidate in (package_dir / "gin", package_dir.parent / "gin"):
        if (candidate / "models").is_dir():
            return candidate
    raise FileNotFoundError(f"no gin files under {package_dir} or beside it; reinstall class_jax")
