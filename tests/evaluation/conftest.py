"""Fixtures shared by the evaluation tests: the real XOR-TyDi dev files, loaded once."""

import pathlib

import pytest

from class_jax.evaluation import files


@pytest.fixture(scope="session")
def xor_dir(shared_dir: pathlib.Path) -> pathlib.Path:
    """../shared/data/xor_tydi (skips when ../shared is absent)."""
    return shared_dir / "data" / "xor_tydi"


@pytest.fixture(scope="session")
def xor_full_dev(xor_dir):
    """The 3,473 XOR-Full dev questions."""
    return files.load_gold_questions(xor_dir / "xor_dev_full_v1_1.jsonl")


@pytest.fixture(scope="session")
def xor_retrieve_dev(xor_dir):
    """The 2,110 XOR-Retrieve (English span) dev questions."""
    return files.load_gold_questions(xor_dir / "xor_dev_retrieve_eng_span_v1_1.jsonl")
