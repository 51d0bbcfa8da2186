"""Vocabularies of the tasks: mT5's SentencePiece model, or one trained on the demo corpus.

Which model a task uses, first match wins: the path passed to the registering function (gin macro VOCAB_PATH in
the stage files), the environment variable CLASS_JAX_VOCAB_PATH, then mT5's public model (T5X's default
location; reading it needs access to gs://t5-data). seqio loads a SentencePiece model lazily, so naming an
unreachable default costs nothing until a task is actually read.

`train_demo_vocabulary` trains a small model on an ingested corpus with mT5's special ids (pad 0, eos 1,
unk 2, no bos) and byte fallback, so every string round-trips and the tiny demo model needs no download.
"""

import functools
import io
import os
import pathlib
from typing import Iterator, Optional, Sequence

import seqio

from class_jax.corpus import corpus_io
from class_jax.runtime.errors import UserError
from class_jax.tasks import text_inputs

MT5_VOCAB_PATH = "gs://t5-data/vocabs/mc4.250000.100extra/sentencepiece.model"
VOCAB_PATH_ENV = "CLASS_JAX_VOCAB_PATH"


def vocabulary_path(path: Optional[str] = None) -> str:
    """The SentencePiece model to use: `path`, else $CLASS_JAX_VOCAB_PATH, else mT5's."""
    return path or os.environ.get(VOCAB_PATH_ENV) or MT5_VOCAB_PATH


@functools.lru_cache(maxsize=None)
def _cached_vocabulary(path: str) -> seqio.SentencePieceVocabulary:
    return seqio.SentencePieceVocabulary(path)


def get_vocabulary(path: Optional[str] = None) -> seqio.SentencePieceVocabulary:
    """The (shared, lazily loaded) vocabulary of `vocabulary_path(path)`.

    Raises:
      UserError: a local path that does not exist (remote paths are checked when first read).
    """
    resolved = vocabulary_path(path)
    if "://" not in resolved and not pathlib.Path(resolved).is_file():
        raise UserError(f"{resolved}: no such SentencePiece model (set VOCAB_PATH or ${VOCAB_PATH_ENV})")
    return _cached_vocabulary(resolved)


def _training_sentences(corpus_dir: str | os.PathLike, languages: Sequence[str]) -> Iterator[str]:
    """The formatted passages (exactly what the model reads), language by language in corpus order."""
    for lang in languages:
        for passage in corpus_io.iter_passages(corpus_dir, lang):
            yield text_inputs.passage_text(passage.title, passage.text)


def train_demo_vocabulary(corpus_dir: str | os.PathLike, out_path: str | os.PathLike, vocab_size: int,
                          languages: Optional[Sequence[str]] = None) -> pathlib.Path:
    """Trains a SentencePiece unigram model on an ingested corpus (deterministically) and writes it atomically.

    The ids match mT5's: pad 0, eos 1, unk 2 and no bos; unknown characters fall back to UTF-8 bytes. Training
    runs on one thread over the corpus in a fixed order without sampling, so equal corpora give equal files.

    Args:
      corpus_dir: an ingested corpus root (`class-jax ingest --out`).
      out_path: the .model file to write.
      vocab_size: pieces in the model (must exceed the 256 byte pieces and the 3 special ones).
      languages: languages to train on (default: every ingested language).

    Returns:
      The written path.

    Raises:
      UserError: no ingested language, or a vocabulary size the corpus cannot support.
    """
    import sentencepiece as spm  # pylint: disable=import-outside-toplevel

    languages = list(languages or corpus_io.corpus_languages(corpus_dir))
    if not languages:
        raise UserError(f"{corpus_dir}: no ingested language to train a vocabulary on")
    if vocab_size <= 256 + 3:
        raise UserError(f"vocab_size {vocab_size} leaves no room beyond the 256 byte pieces and pad/eos/unk")
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=_training_sentences(corpus_dir, languages), model_writer=model,
            vocab_size=vocab_size, model_type="unigram", byte_fallback=True, character_coverage=0.9995,
            pad_id=0, eos_id=1, unk_id=2, bos_id=-1, num_threads=1, shuffle_input_sentence=False,
            input_sentence_size=0, max_sentence_length=16384, minloglevel=2)
    except RuntimeError as e:
        raise UserError(f"SentencePiece training on {corpus_dir} failed: {e}") from e
    out_path = pathlib.Path(out_path)
    with corpus_io.atomic_write(out_path, "wb") as f:
        f.write(model.getvalue())
    return out_path
