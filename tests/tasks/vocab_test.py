"""Vocabularies: the demo SentencePiece model (deterministic, mT5's special ids, byte fallback) and path lookup."""

import sentencepiece as spm
import pytest

from class_jax.runtime.errors import UserError
from class_jax.tasks import vocab
from conftest import DEMO_VOCAB_SIZE


def test_demo_vocabulary_has_mt5_ids_and_is_deterministic(demo, tmp_path):
    again = vocab.train_demo_vocabulary(demo["corpus"], tmp_path / "again.model", DEMO_VOCAB_SIZE)
    assert again.read_bytes() == demo["vocab"].read_bytes()
    processor = spm.SentencePieceProcessor(model_file=str(demo["vocab"]))
    assert processor.get_piece_size() == DEMO_VOCAB_SIZE
    assert (processor.pad_id(), processor.eos_id(), processor.unk_id(), processor.bos_id()) == (0, 1, 2, -1)
    vocabulary = vocab.get_vocabulary(str(demo["vocab"]))
    assert (vocabulary.pad_id, vocabulary.eos_id, vocabulary.unk_id) == (0, 1, 2)
    # Characters absent from the demo corpus still round-trip, as bytes.
    for text in ("Ελληνικά 🙂 ħ", "title: Bageme context: 13 Millionen"):
        ids = vocabulary.encode(text)
        assert 2 not in ids and vocabulary.decode(ids) == text


def test_vocabulary_path_precedence_and_missing_file(monkeypatch, tmp_path, demo):
    monkeypatch.delenv(vocab.VOCAB_PATH_ENV, raising=False)
    assert vocab.vocabulary_path() == vocab.MT5_VOCAB_PATH
    monkeypatch.setenv(vocab.VOCAB_PATH_ENV, str(demo["vocab"]))
    assert vocab.vocabulary_path() == str(demo["vocab"])
    assert vocab.vocabulary_path("/explicit.model") == "/explicit.model"
    assert vocab.get_vocabulary().vocab_size == DEMO_VOCAB_SIZE
    with pytest.raises(UserError, match=f"{tmp_path / 'missing.model'}: no such SentencePiece model"):
        vocab.get_vocabulary(str(tmp_path / "missing.model"))


def test_training_needs_an_ingested_corpus_and_room_beyond_bytes(demo, tmp_path):
    with pytest.raises(UserError, match="no ingested language"):
        vocab.train_demo_vocabulary(tmp_path / "empty", tmp_path / "v.model", 500)
    with pytest.raises(UserError, match="leaves no room beyond the 256 byte pieces"):
        vocab.train_demo_vocabulary(demo["corpus"], tmp_path / "v.model", 200)
    assert not (tmp_path / "v.model").exists()
