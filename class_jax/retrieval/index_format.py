"""The on-disk index: vector shards, passage ids, a build spec and a manifest, all written atomically.

Layout of an index directory:

    index_spec.json              what is being built: model identity, vocabulary, input format, dtype, shard size,
                                 the corpus file list. Written first; a resumed build must match it exactly.
    shards/vectors-NNNNN.npy     pooled mode: [count, dim] float16 or float32 retrieval vectors
    shards/tokens-NNNNN.npy      token (ReAtt) mode: [count, max_length, head_dim] per-token key vectors, zero
                                 beyond each passage's length
    shards/lengths-NNNNN.npy     token mode: [count] int32 real tokens per passage
    shards/ids-NNNNN.txt         passage ids, one per line (UTF-8), row order
    shards/shard-NNNNN.json      written after the shard's files: count, first row, sha256 and size of each file;
                                 its presence marks the shard complete (a killed build redoes only missing shards)
    manifest.json                written last: the spec, every shard entry, the total count; presence = complete

Shard i holds corpus rows [i * shard_size, min((i + 1) * shard_size, num_rows)).

Size: pooled vectors cost dim x 2 bytes a passage in float16 (mT5-large CLASS: 1024 dims, 2 KiB; 18.0M English
passages: 37 GB). Token mode keeps every token: max_length x head_dim x 2 bytes (200 x 64 x 2 = 25.6 KiB a
passage, 12.5x the pooled index: 460 GB for the English corpus), padding included so shards map straight to
[rows, length, dim] device arrays.
"""

import dataclasses
import hashlib
import io
import json
import os
import pathlib
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np

from class_jax.corpus import corpus_io
from class_jax.models import retrievers
from class_jax.runtime.errors import UserError

FORMAT_VERSION = 1
SPEC_FILE = "index_spec.json"
MANIFEST_FILE = "manifest.json"
SHARDS_DIR = "shards"
VECTOR_DTYPES = ("float16", "float32")
# Spec fields that must agree between a build and its resumption, with what a difference means to the user.
_COMPATIBILITY_FIELDS = (
    ("format_version", "index format version"),
    ("model", "model"),
    ("vocabulary_sha256", "vocabulary"),
    ("passage_max_length", "passage length"),
    ("dtype", "vector dtype"),
    ("shard_size", "shard size"),
    ("corpus_files", "corpus (files or passage counts)"),
)


@dataclasses.dataclass(frozen=True)
class IndexSpec:
    """What an index holds and how it was made (the content of index_spec.json).

    Attributes:
      model: `ModelIdentity.to_json()` of the encoding model (config hash, params fingerprint, checkpoint, mode).
      vocabulary_sha256: sha256 of the sentencepiece model file.
      passage_max_length: passage tokens (EOS included).
      dtype: stored vector dtype, "float16" or "float32".
      dim: vector size (pooled: heads * head_dim; token mode: head_dim).
      shard_size: rows per shard (the last may be shorter).
      corpus_root: the corpus directory (texts are looked up there).
      corpus_files: `CorpusSource.to_json()`: the passages files in row order with their counts.
      num_rows: passages in the index.
      format_version: FORMAT_VERSION.
    """

    model: dict[str, Any]
    vocabulary_sha256: str
    passage_max_length: int
    dtype: str
    dim: int
    shard_size: int
    corpus_root: str
    corpus_files: list[dict[str, Any]]
    num_rows: int
    format_version: int = FORMAT_VERSION

    @property
    def retrieval_mode(self) -> str:
        return self.model["retrieval_mode"]

    @property
    def arrays(self) -> tuple[str, ...]:
        """The arrays each shard stores besides the ids file (the retriever kind's `index_arrays`)."""
        return tuple(retrievers.retriever_for(self.retrieval_mode).index_arrays)

    @property
    def num_shards(self) -> int:
        return -(-self.num_rows // self.shard_size)

    def shard_rows(self, shard: int) -> tuple[int, int]:
        """[first, stop) corpus rows of a shard."""
        return shard * self.shard_size, min((shard + 1) * self.shard_size, self.num_rows)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: str) -> "IndexSpec":
        """Raises UserError for a spec of another format version or with missing fields."""
        if data.get("format_version") != FORMAT_VERSION:
            raise UserError(f"{source}: index format version {data.get('format_version')!r}, this class_jax "
                            f"reads version {FORMAT_VERSION}")
        try:
            return cls(**{field.name: data[field.name] for field in dataclasses.fields(cls)})
        except KeyError as e:
            raise UserError(f"{source}: missing field {e.args[0]!r}") from None

    def differences(self, other: "IndexSpec") -> list[str]:
        """What differs between two specs in ways that forbid mixing their shards (empty: compatible)."""
        mine, theirs = self.to_json(), other.to_json()
        problems = []
        for field, meaning in _COMPATIBILITY_FIELDS:
            a, b = mine[field], theirs[field]
            if field == "model":
                # Where the checkpoint lives does not change the model; its configuration and parameters do.
                a = {k: v for k, v in a.items() if k != "checkpoint"}
                b = {k: v for k, v in b.items() if k != "checkpoint"}
            if a != b:
                problems.append(meaning)
        return problems


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def _write_bytes(path: pathlib.Path, data: bytes) -> dict[str, Any]:
    with corpus_io.atomic_write(path, "wb") as out:
        out.write(data)
    return {"name": path.name, "sha256": _sha256(data), "bytes": len(data)}


def shard_name(kind: str, shard: int, suffix: str) -> str:
    return f"{kind}-{shard:05d}.{suffix}"


def write_shard(index_dir: pathlib.Path, spec: IndexSpec, shard: int, arrays: Mapping[str, np.ndarray],
                passage_ids: Sequence[str]) -> dict[str, Any]:
    """Writes one shard's files, then its completion marker.

    Args:
      index_dir: the index directory.
      spec: the index spec (gives the shard's rows and the arrays expected).
      shard: shard number.
      arrays: the mode's arrays (`IndexSpec.arrays`), `count` rows each, already in their stored dtype.
      passage_ids: the ids of the rows.

    Returns:
      The shard entry (also the marker's content).

    Raises:
      ValueError: arrays or ids do not match the shard's row count or the spec's arrays.
    """
    first, stop = spec.shard_rows(shard)
    expected = spec.arrays
    if sorted(arrays) != sorted(expected):
        raise ValueError(f"shard {shard}: arrays {sorted(arrays)}, the {spec.retrieval_mode} mode stores {expected}")
    if len(passage_ids) != stop - first or any(len(a) != stop - first for a in arrays.values()):
        raise ValueError(f"shard {shard}: expected {stop - first} rows")
    folder = index_dir / SHARDS_DIR
    files = {name: _write_bytes(folder / shard_name(name, shard, "npy"), _npy_bytes(arrays[name]))
             for name in expected}
    files["ids"] = _write_bytes(folder / shard_name("ids", shard, "txt"),
                                "".join(f"{i}\n" for i in passage_ids).encode("utf-8"))
    entry = {"shard": shard, "first_row": first, "count": stop - first, "files": files}
    corpus_io.write_json(folder / shard_name("shard", shard, "json"), entry)
    return entry


def read_json(path: pathlib.Path) -> Any:
    """Reads a JSON file of the index, as a UserError if it is unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: unreadable ({e})") from None


def completed_shards(index_dir: pathlib.Path, spec: IndexSpec) -> dict[int, dict[str, Any]]:
    """Shard number -> entry, for shards whose marker exists and whose files have the recorded sizes."""
    done = {}
    for shard in range(spec.num_shards):
        marker = index_dir / SHARDS_DIR / shard_name("shard", shard, "json")
        if not marker.is_file():
            continue
        entry = read_json(marker)
        first, stop = spec.shard_rows(shard)
        sizes_ok = all((index_dir / SHARDS_DIR / f["name"]).is_file()
                       and (index_dir / SHARDS_DIR / f["name"]).stat().st_size == f["bytes"]
                       for f in entry.get("files", {}).values())
        if entry.get("first_row") == first and entry.get("count") == stop - first and sizes_ok:
            done[shard] = entry
    return done


def write_spec(index_dir: pathlib.Path, spec: IndexSpec) -> None:
    corpus_io.write_json(index_dir / SPEC_FILE, spec.to_json())


def read_spec(index_dir: pathlib.Path) -> Optional[IndexSpec]:
    """The spec of a started build, or None when the directory has none."""
    path = index_dir / SPEC_FILE
    return IndexSpec.from_json(read_json(path), str(path)) if path.is_file() else None


def write_manifest(index_dir: pathlib.Path, spec: IndexSpec, entries: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Writes manifest.json (the completion mark of the whole index) and returns its content."""
    entries = sorted(entries, key=lambda e: e["shard"])
    count = sum(e["count"] for e in entries)
    if [e["shard"] for e in entries] != list(range(spec.num_shards)) or count != spec.num_rows:
        raise ValueError(f"{index_dir}: shards {[e['shard'] for e in entries]} do not cover {spec.num_rows} rows")
    manifest = {**spec.to_json(), "count": count, "shards": entries}
    corpus_io.write_json(index_dir / MANIFEST_FILE, manifest)
    return manifest


def file_sha256(path: pathlib.Path, block: int = 1 << 24) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def index_dir_path(path: str | os.PathLike) -> pathlib.Path:
    return pathlib.Path(path).absolute()
