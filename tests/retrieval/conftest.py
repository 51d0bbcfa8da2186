"""Session fixtures of the retrieval tests: tiny checkpoints (two different models) and a two-language corpus."""

import pathlib

import pytest

import retrieval_fixtures as fx

# Rows per file of the shared corpus: files of different sizes, so index shards straddle file boundaries.
CORPUS_FILES = {"en": [10, 7], "ja": [6]}


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return fx.write_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", fx.TINY, seed=0)


@pytest.fixture(scope="session")
def other_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """Same configuration, different parameters."""
    return fx.write_checkpoint(tmp_path_factory.mktemp("ckpt") / "other", fx.TINY, seed=1)


@pytest.fixture(scope="session")
def token_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return fx.write_checkpoint(tmp_path_factory.mktemp("ckpt") / "token", fx.TINY_TOKEN, seed=2)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[pathlib.Path, dict]:
    root = tmp_path_factory.mktemp("corpus")
    return root, fx.write_corpus(root, CORPUS_FILES)


@pytest.fixture(scope="session")
def vocabulary():
    return fx.vocabulary()
