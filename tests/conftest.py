"""Test-wide environment: 8 fake CPU devices for sharding tests, offline NLTK tables, quiet TensorFlow.

These must be set before jax / tensorflow / nltk are first imported, hence at conftest import time.
"""

import os
import pathlib

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("NLTK_DATA", str(SHARED_DIR / "nltk_data"))


@pytest.fixture(scope="session")
def shared_dir() -> pathlib.Path:
    """The read-only ../shared folder of real data; tests needing it are skipped when it is absent."""
    if not SHARED_DIR.is_dir():
        pytest.skip("../shared is not present")
    return SHARED_DIR
