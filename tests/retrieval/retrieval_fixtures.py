"""Tiny models, corpora and query files for the retrieval tests (written with the project's own writers)."""

import dataclasses
import os
import pathlib
import sys
from typing import Sequence

import flax.linen as nn
import jax
import numpy as np
import seqio
import seqio.test_utils

from class_jax.checkpoints import params_io
from class_jax.corpus import corpus_io
from class_jax.models.class_model import CLASSModel
from class_jax.models.config import ModelConfig

# seqio's offline test vocabulary: 26 pieces, pad 0, EOS 1, unk 2.
VOCAB_PATH = os.path.join(seqio.test_utils.TEST_DATA_DIR, "sentencepiece", "sentencepiece.model")
TINY = ModelConfig(vocab_size=32, emb_dim=16, num_heads=2, head_dim=4, mlp_dim=24, num_encoder_layers=2,
                   num_decoder_layers=1, retriever_layer=1, relative_attention_num_buckets=8,
                   relative_attention_max_distance=16, dropout_rate=0.0)
TINY_TOKEN = dataclasses.replace(TINY, retrieval_mode="token", retrieval_head=1)
LANGS = ("en", "ja")
WORDS = ("paris", "tokyo", "river", "mountain", "king", "queen", "war", "peace", "song", "film", "city", "island")


def vocabulary() -> seqio.SentencePieceVocabulary:
    return seqio.SentencePieceVocabulary(VOCAB_PATH)


def init_params(config: ModelConfig, seed: int = 0):
    model = CLASSModel(config)
    shapes = CLASSModel.init_shapes()
    # Jitted: tracing once is much faster than running the tiny model's init op by op.
    init = jax.jit(lambda rng: nn.unbox(model.get_initial_variables(rng, shapes)["params"]))
    return model, jax.tree_util.tree_map(np.asarray, init(jax.random.PRNGKey(seed)))


def write_checkpoint(directory: pathlib.Path, config: ModelConfig = TINY, seed: int = 0) -> pathlib.Path:
    """A params directory of a randomly initialised tiny model, with the test vocabulary inside."""
    _, params = init_params(config, seed)
    return params_io.save_params(directory, params, config, spiece_model=pathlib.Path(VOCAB_PATH))


def passage_texts(lang: str, count: int, seed: int) -> list[dict]:
    """`count` passage records of one language; some texts are long enough to be cut at 200 tokens."""
    rng = np.random.RandomState(seed)
    records = []
    for index in range(count):
        words = rng.choice(WORDS, size=int(rng.choice([3, 12, 90])))
        records.append({"id": f"{lang}:{100 + index // 3}:{index % 3}", "lang": lang,
                        "title": f"{lang} {WORDS[index % len(WORDS)]} {index // 3}", "text": " ".join(words),
                        "links": []})
    return records


def write_corpus(root: pathlib.Path, counts: dict[str, Sequence[int]], seed: int = 0) -> dict[str, list[dict]]:
    """An ingested-corpus layout: per language a manifest and passages files of the given sizes.

    Returns:
      lang -> the passage records in row order.
    """
    written = {}
    for lang_index, (lang, file_sizes) in enumerate(counts.items()):
        records = passage_texts(lang, sum(file_sizes), seed + lang_index)
        start = 0
        for file_index, size in enumerate(file_sizes):
            corpus_io.write_jsonl(root / lang / "passages" / f"passages-{file_index:05d}.jsonl.gz",
                                  records[start:start + size])
            start += size
        corpus_io.write_json(root / lang / "manifest.json", {"counts": {"passages": len(records)}})
        written[lang] = records
    return written


def write_queries(path: pathlib.Path, count: int = 7, seed: int = 3) -> list[dict]:
    """XOR-TyDi-style query lines (with answers, so the scorer can read them as gold too)."""
    rng = np.random.RandomState(seed)
    records = [{"id": f"q{i}", "question": " ".join(rng.choice(WORDS, size=4)), "lang": (" ja" if i % 2 else "ko"),
                "answers": [str(rng.choice(WORDS))], "split": "dev"} for i in range(count)]
    corpus_io.write_jsonl(path, records)
    return records


def brute_force_top_k(queries: np.ndarray, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference: float64 numpy scores, sorted by descending score then ascending row."""
    scores = queries.astype(np.float64) @ vectors.astype(np.float64).T
    rows = np.broadcast_to(np.arange(len(vectors)), scores.shape)
    order = np.lexsort((rows, -scores), axis=-1)[:, :k]
    return np.take_along_axis(scores, order, -1), order


def class_jax_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "class_jax.cli", *args]
