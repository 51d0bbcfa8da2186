"""Fixtures of the task tests: an offline vocabulary, a small demo wiki with its corpus and vocabulary."""

import pathlib

import pytest


@pytest.fixture(scope="session")
def test_vocab():
    """seqio's small offline SentencePiece vocabulary (pad 0, eos 1, unk 2)."""
    from seqio import test_utils  # pylint: disable=import-outside-toplevel
    return test_utils.sentencepiece_vocab()


@pytest.fixture(scope="session")
def demo(tmp_path_factory) -> dict[str, pathlib.Path]:
    """A small demo wiki, its ingested corpus and a vocabulary trained on it."""
    from class_jax.demo.world import wiki as demo_wiki  # pylint: disable=import-outside-toplevel
    from class_jax.tasks import vocab  # pylint: disable=import-outside-toplevel
    root = tmp_path_factory.mktemp("demo")
    demo_wiki.make_demo_wiki(root / "wiki", size="small", seed=0)
    demo_wiki.ingest_demo_wiki(root / "wiki", root / "corpus")
    vocab.train_demo_vocabulary(root / "corpus", root / "demo.model", DEMO_VOCAB_SIZE)
    return {"root": root, "wiki": root / "wiki", "corpus": root / "corpus", "vocab": root / "demo.model"}


DEMO_VOCAB_SIZE = 1000
