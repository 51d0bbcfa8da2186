"""The stage-1 English teacher (docs/method.md#stage-1-clr-pt): a frozen retriever whose top-k passages and scores
for each English cloze are the CLR-PT distillation targets, retrieved once and stored with the records.

`Teacher` is the interface; `BM25Teacher` is the lexical teacher for machines without a neural one. A dense teacher
(ReAtt or a class_jax checkpoint) implements the same `top_k`.

BM25 scoring (bm25s "lucene" variant, as Lucene >= 8 scores):
    score(q, d) = sum over query tokens t of  idf(t) * tf(t, d) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl))
    idf(t) = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))
A token repeated in the query counts once per repetition.
"""

import abc
import functools
import itertools
import json
import pathlib
import re
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from class_jax.corpus.types import Passage
from class_jax.runtime.errors import UserError

TopK = tuple[list[str], list[float]]

_INDEX_FORMAT_VERSION = 1
_CONFIG_FILE = "teacher.json"
_IDS_FILE = "passage_ids.json"
_TOKEN_PATTERN = re.compile(r"[^\W_]+")  # Letters and digits; "_" is excluded so "_X_" never becomes a term.


class Teacher(abc.ABC):
    """A frozen retriever over a fixed passage collection."""

    @abc.abstractmethod
    def top_k(self, queries: Sequence[str], k: int) -> list[TopK]:
        """Retrieves the k best passages of each query.

        Args:
          queries: query texts (English clozes; the mask token is ignored).
          k: passages per query; capped at the collection size.

        Returns:
          Per query, (passage_ids, scores): best first, ties broken by passage id, exactly min(k, N) entries.
        """

    def describe(self) -> dict:
        """What the teacher is, stored with retrieved targets for provenance."""
        return {"kind": type(self).__name__}


def _resolve_stemmer(name: str | None) -> tuple[str | None, Callable[[str], str] | None]:
    """Maps a stemmer setting to (recorded name, stem function); "auto" picks NLTK's Snowball if installed."""
    if name in (None, "none"):
        return None, None
    if name not in ("auto", "snowball", "porter"):
        raise UserError(f"unknown stemmer {name!r}: use 'auto', 'snowball', 'porter' or None")
    try:
        from nltk.stem import porter, snowball  # pylint: disable=import-outside-toplevel
    except ImportError:
        if name == "auto":
            return None, None
        raise UserError(f"stemmer {name!r} needs the nltk package, which is not installed") from None
    if name == "porter":
        return "porter", porter.PorterStemmer().stem
    return "snowball", snowball.SnowballStemmer("english").stem


class EnglishTokenizer:
    """Lower-cases, keeps letter/digit runs, drops the mask token and Lucene's 33 English stopwords, may stem."""

    def __init__(self, stemmer: str | None = "auto", mask_token: str = "_X_"):
        from bm25s import stopwords  # pylint: disable=import-outside-toplevel

        self.stemmer_name, stem = _resolve_stemmer(stemmer)
        self.mask_token = mask_token
        self._stopwords = frozenset(stopwords.STOPWORDS_EN)
        # Wikipedia's vocabulary repeats heavily: memoising the stemmer makes it cheap.
        self._stem = functools.lru_cache(maxsize=1 << 20)(stem) if stem else None

    def __call__(self, text: str) -> list[str]:
        if self.mask_token:
            text = text.replace(self.mask_token, " ")
        tokens = [token for token in _TOKEN_PATTERN.findall(text.lower()) if token not in self._stopwords]
        return [self._stem(token) for token in tokens] if self._stem else tokens


def passage_text(passage: Passage, include_title: bool) -> str:
    return f"{passage.title} {passage.text}" if include_title else passage.text


class BM25Teacher(Teacher):
    """BM25 over English passages with bm25s; deterministic top-k; saved and loaded as a folder."""

    def __init__(self, retriever, passage_ids: list[str], tokenizer: EnglishTokenizer, *, k1: float, b: float,
                 include_title: bool):
        """Wraps a built index; use `build` or `load` instead of calling this directly."""
        self._retriever = retriever
        self.passage_ids = passage_ids
        self.tokenizer = tokenizer
        self.k1 = k1
        self.b = b
        self.include_title = include_title

    @classmethod
    def build(cls, passages: Iterable[Passage], *, k1: float = 0.9, b: float = 0.4, stemmer: str | None = "auto",
              mask_token: str = "_X_", include_title: bool = True, lang: str = "en") -> "BM25Teacher":
        """Indexes passages.

        Args:
          passages: the English passages (any order; they are indexed in passage-id order).
          k1: BM25 term-frequency saturation; 0.9 and b = 0.4 are Anserini's defaults for Wikipedia passages,
            which DPR's BM25 baseline used.
          b: BM25 length normalisation.
          stemmer: "auto" (Snowball when NLTK is installed), "snowball", "porter" or None.
          mask_token: removed from queries before tokenisation.
          include_title: index "title text" rather than the text alone.
          lang: the language every passage must have.

        Returns:
          The teacher.

        Raises:
          UserError: a passage has another language, or two passages share an id, or there are none.
        """
        import bm25s  # pylint: disable=import-outside-toplevel

        by_id: dict[str, Passage] = {}
        for passage in passages:
            if passage.lang != lang:
                raise UserError(f"passage {passage.passage_id}: language {passage.lang!r}, but the BM25 teacher "
                                f"indexes '{lang}' passages only")
            if passage.passage_id in by_id:
                raise UserError(f"passage {passage.passage_id}: duplicate passage id")
            by_id[passage.passage_id] = passage
        if not by_id:
            raise UserError("the BM25 teacher needs at least one passage")
        tokenizer = EnglishTokenizer(stemmer, mask_token)
        # Indexing in id order makes document index order equal id order, which is what breaks score ties.
        passage_ids = sorted(by_id)
        corpus_tokens = [tokenizer(passage_text(by_id[pid], include_title)) for pid in passage_ids]
        retriever = bm25s.BM25(k1=k1, b=b, method="lucene")
        retriever.index(corpus_tokens, create_empty_token=False, show_progress=False)
        return cls(retriever, passage_ids, tokenizer, k1=k1, b=b, include_title=include_title)

    def describe(self) -> dict:
        return {"kind": "bm25", "k1": self.k1, "b": self.b, "stemmer": self.tokenizer.stemmer_name,
                "include_title": self.include_title, "passages": len(self.passage_ids)}

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of `query` against every passage, in `passage_ids` order (float32)."""
        vocab = self._retriever.vocab_dict
        token_ids = [vocab[token] for token in self.tokenizer(query) if token in vocab]
        if not token_ids:
            return np.zeros(len(self.passage_ids), dtype=np.float32)
        return np.asarray(self._retriever.get_scores_from_ids(token_ids), dtype=np.float32)

    def top_k(self, queries: Sequence[str], k: int) -> list[TopK]:
        if k <= 0:
            raise ValueError(f"k must be positive, got {k}")
        k = min(k, len(self.passage_ids))
        results = []
        for query in queries:
            scores = self.scores(query)
            order = _top_indices(scores, k)
            results.append(([self.passage_ids[index] for index in order], [float(scores[index]) for index in order]))
        return results

    def save(self, directory: str | pathlib.Path) -> None:
        """Writes the index and the settings needed to reload it to `directory`."""
        directory = pathlib.Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._retriever.save(str(directory / "bm25s"), show_progress=False)
        (directory / _IDS_FILE).write_text(json.dumps(self.passage_ids), encoding="utf-8")
        config = {"format_version": _INDEX_FORMAT_VERSION, "k1": self.k1, "b": self.b,
                  "stemmer": self.tokenizer.stemmer_name, "mask_token": self.tokenizer.mask_token,
                  "include_title": self.include_title, "passages": len(self.passage_ids)}
        # Written last: a folder without it is an interrupted save and is refused by `load`.
        (directory / _CONFIG_FILE).write_text(json.dumps(config, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: str | pathlib.Path) -> "BM25Teacher":
        """Reads a teacher written by `save`.

        Raises:
          UserError: the folder is missing, incomplete, of another format version, or needs a stemmer that is
            not installed.
        """
        import bm25s  # pylint: disable=import-outside-toplevel

        directory = pathlib.Path(directory)
        config_path = directory / _CONFIG_FILE
        if not config_path.is_file():
            raise UserError(f"{config_path}: not found; {directory} is not a saved BM25 teacher (or its save was "
                            f"interrupted)")
        config = json.loads(config_path.read_text(encoding="utf-8"))
        if config.get("format_version") != _INDEX_FORMAT_VERSION:
            raise UserError(f"{config_path}: format_version {config.get('format_version')!r}, expected "
                            f"{_INDEX_FORMAT_VERSION}")
        stemmer_name = config["stemmer"]
        tokenizer = EnglishTokenizer(stemmer_name, config["mask_token"])
        if tokenizer.stemmer_name != stemmer_name:
            raise UserError(f"{config_path}: the index was built with stemmer {stemmer_name!r}, which is not "
                            f"available here")
        passage_ids = json.loads((directory / _IDS_FILE).read_text(encoding="utf-8"))
        retriever = bm25s.BM25.load(str(directory / "bm25s"), show_progress=False)
        if retriever.scores["num_docs"] != len(passage_ids):
            raise UserError(f"{directory}: {len(passage_ids)} passage ids for {retriever.scores['num_docs']} "
                            f"indexed documents")
        return cls(retriever, passage_ids, tokenizer, k1=config["k1"], b=config["b"],
                   include_title=config["include_title"])


def _top_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores, best first, equal scores in index order."""
    if k < len(scores):
        kth = np.partition(scores, len(scores) - k)[len(scores) - k]
        above = np.flatnonzero(scores > kth)
        # Passages tied at the k-th score are admitted in index (= passage id) order.
        tied = np.flatnonzero(scores == kth)[:k - len(above)]
        candidates = np.concatenate([above, tied])
    else:
        candidates = np.arange(len(scores))
    return candidates[np.lexsort((candidates, -scores[candidates]))]


def attach_teacher_passages(records: Iterable[Mapping], teacher: Teacher, k: int, *, batch_size: int = 256,
                            query_field: str = "english_cloze") -> Iterator[dict]:
    """Adds the teacher's top-k English passages to CLR-PT records, streaming in batches.

    Args:
      records: dicts with `qid`, `english_cloze`, `target_cloze`, `answer` (the released CLR-PT format).
      teacher: the frozen retriever.
      k: passages per record.
      batch_size: records per `teacher.top_k` call.
      query_field: the field used as the query.

    Yields:
      Copies of the records with `teacher_passage_ids` (best first) and `teacher_scores`, in input order.

    Raises:
      UserError: a record lacks `qid` or the query field.
    """
    numbered = enumerate(records, start=1)
    while batch := list(itertools.islice(numbered, batch_size)):
        for number, record in batch:
            for field in ("qid", query_field):
                if not isinstance(record.get(field), str):
                    raise UserError(f"CLR-PT record {number} (qid={record.get('qid')!r}): field '{field}' is "
                                    f"missing or not a string")
        retrieved = teacher.top_k([record[query_field] for _, record in batch], k)
        for (_, record), (passage_ids, scores) in zip(batch, retrieved):
            yield dict(record, teacher_passage_ids=passage_ids, teacher_scores=scores)
