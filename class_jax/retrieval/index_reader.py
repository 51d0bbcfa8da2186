"""Reading a complete index: its manifest, checksums, memory-mapped vector rows and passage ids."""

import os
import pathlib
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from class_jax.runtime.errors import UserError
from class_jax.retrieval import index_format
from class_jax.retrieval.corpus_source import CorpusSource
from class_jax.retrieval.model_identity import ModelIdentity


class IdTable:
    """Passage ids of every row, kept as one UTF-8 buffer plus offsets (18M ids cost ~0.4 GB, not ~1.5 GB of str)."""

    def __init__(self, chunks: Sequence[bytes]):
        """Builds the table from the ids files' contents (one id per line, in row order)."""
        data = b"".join(chunks)
        ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == ord("\n"))
        self._data = data
        self._starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64) if len(ends) else np.zeros(0, np.int64)
        self._ends = ends.astype(np.int64)

    def __len__(self) -> int:
        return len(self._ends)

    def __getitem__(self, row: int) -> str:
        return self._data[self._starts[row]:self._ends[row]].decode("utf-8")

    def lookup(self, rows: np.ndarray) -> np.ndarray:
        """Ids of an array of rows, as an object array of the same shape."""
        rows = np.asarray(rows)
        return np.array([self[int(r)] for r in rows.reshape(-1)], dtype=object).reshape(rows.shape)


class IndexReader:
    """A complete index on disk."""

    def __init__(self, path: str | os.PathLike, verify_checksums: bool = False):
        """Opens the index.

        Args:
          path: the index directory.
          verify_checksums: recompute the sha256 of every file (reads the whole index once).

        Raises:
          UserError: not a complete index, a file missing or of the wrong size, or a checksum mismatch.
        """
        self.path = index_format.index_dir_path(path)
        manifest_path = self.path / index_format.MANIFEST_FILE
        if not manifest_path.is_file():
            started = (self.path / index_format.SPEC_FILE).is_file()
            raise UserError(f"{self.path}: not a complete index (no {index_format.MANIFEST_FILE}); "
                            + ("its build did not finish: rerun `class-jax index` with the same arguments to "
                               "resume it" if started else "build one with `class-jax index`"))
        self.manifest = index_format.read_json(manifest_path)
        self.spec = index_format.IndexSpec.from_json(self.manifest, str(manifest_path))
        self.shards: list[dict[str, Any]] = self.manifest["shards"]
        for entry in self.shards:
            for file in entry["files"].values():
                file_path = self.path / index_format.SHARDS_DIR / file["name"]
                if not file_path.is_file() or file_path.stat().st_size != file["bytes"]:
                    raise UserError(f"{file_path}: missing or not {file['bytes']} bytes as the manifest says")
                if verify_checksums and index_format.file_sha256(file_path) != file["sha256"]:
                    raise UserError(f"{file_path}: sha256 differs from the manifest (the file is corrupt)")
        self._arrays: dict[str, list[np.ndarray]] = {}

    @property
    def num_rows(self) -> int:
        return self.spec.num_rows

    @property
    def retrieval_mode(self) -> str:
        return self.spec.retrieval_mode

    def check_model(self, identity: ModelIdentity) -> None:
        """Refuses a model other than the one that built the index.

        Raises:
          UserError: naming both checkpoints and what differs.
        """
        recorded = self.spec.model
        if identity.same_model(recorded):
            return
        what = "configuration" if recorded.get("config_hash") != identity.config_hash else "parameters"
        raise UserError(f"{self.path} was built with the model at {recorded.get('checkpoint')} but "
                        f"{identity.checkpoint} is a different model ({what} differ); query vectors of one model "
                        "cannot search another's index: use the index's checkpoint or rebuild the index")

    def _shard_arrays(self, name: str) -> list[np.ndarray]:
        if name not in self._arrays:
            arrays = []
            for entry in self.shards:
                file = entry["files"].get(name)
                if file is None:
                    raise UserError(f"{self.path}: a {self.retrieval_mode}-mode index has no {name!r} arrays")
                arrays.append(np.load(self.path / index_format.SHARDS_DIR / file["name"], mmap_mode="r"))
            self._arrays[name] = arrays
        return self._arrays[name]

    def array_shape(self, name: str) -> tuple[int, ...]:
        """Shape of the whole [num_rows, ...] array `name` ("vectors", "tokens" or "lengths")."""
        first = self._shard_arrays(name)[0]
        return (self.num_rows,) + tuple(first.shape[1:])

    def array_dtype(self, name: str) -> np.dtype:
        return self._shard_arrays(name)[0].dtype

    def read_rows(self, name: str, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) of array `name`, copied out of the memory-mapped shards."""
        arrays = self._shard_arrays(name)
        pieces = []
        for entry, array in zip(self.shards, arrays):
            first = entry["first_row"]
            lo, hi = max(start, first), min(stop, first + entry["count"])
            if lo < hi:
                pieces.append(np.asarray(array[lo - first:hi - first]))
        if not pieces:
            return np.zeros((0,) + self.array_shape(name)[1:], self.array_dtype(name))
        return np.concatenate(pieces) if len(pieces) > 1 else pieces[0]

    def ids(self) -> IdTable:
        """The passage id of every row."""
        chunks = [(self.path / index_format.SHARDS_DIR / entry["files"]["ids"]["name"]).read_bytes()
                  for entry in self.shards]
        table = IdTable(chunks)
        if len(table) != self.num_rows:
            raise UserError(f"{self.path}: ids files hold {len(table)} ids for {self.num_rows} rows")
        return table

    def corpus(self, root: Optional[str | os.PathLike] = None) -> CorpusSource:
        """The corpus the index was built from (for passage texts); `root` overrides a moved corpus."""
        root = pathlib.Path(root if root is not None else self.spec.corpus_root)
        if not root.is_dir():
            raise UserError(f"{root}: the index's corpus directory does not exist (pass --corpus if it moved)")
        return CorpusSource.from_json(root, self.spec.corpus_files)


def describe(manifest: Mapping[str, Any]) -> str:
    """One line about an index, for logs."""
    return (f"{manifest['num_rows']} passages, {manifest['model']['retrieval_mode']} vectors of {manifest['dim']} "
            f"{manifest['dtype']} in {len(manifest['shards'])} shards")
