"""Output formats of `class-jax mine`: feature schemas, tf.train.Example encoding, and deterministic sharded files.

Each dataset is written per language as N shards, every shard twice: TFRecord of tf.train.Example (what SeqIO
reads with `seqio.TFExampleDataSource`) and JSON Lines (the same records, for people and other tools):

    OUT/<dataset>/<lang>/<dataset>-<lang>-00000-of-00004.tfrecord
    OUT/<dataset>/<lang>/<dataset>-<lang>-00000-of-00004.jsonl

A record goes to shard int(sha1(qid)[:8], 16) % N, with N = max(1, ceil(records / records_per_shard)), and
records are sorted by qid inside a shard: equal inputs give byte-identical files whatever the runner's
parallelism. Examples are serialised deterministically. Files appear under their final name only when complete
(written to a temporary name, then renamed). Paths may be local or any filesystem tf.io.gfile knows (gs://, ...).

Feature types (the `FEATURES` tables): "bytes" = one UTF-8 string (tf.string, FixedLenFeature([])), "int" =
one int64, "float" = one float32, "bytes_list" / "float_list" = variable-length lists (parsed as
FixedLenSequenceFeature(allow_missing=True): a dense 1-D tensor per example).
"""

import gzip
import hashlib
import json
import math
import posixpath
from typing import Any, Iterable, Iterator, Mapping

CLR_PT_FEATURES: dict[str, str] = {
    "qid": "bytes", "lang": "bytes", "english_cloze": "bytes", "target_cloze": "bytes", "answer": "bytes",
    "target_answer": "bytes", "answer_entity": "bytes", "article_entity": "bytes", "english_title": "bytes",
    "target_title": "bytes", "english_passage_id": "bytes", "target_passage_id": "bytes",
    "parallel_score": "float",
}
CLR_PT_TEACHER_FEATURES: dict[str, str] = {
    **CLR_PT_FEATURES, "teacher_passage_ids": "bytes_list", "teacher_scores": "float_list",
}
MLQA_PT_CLOZE_FEATURES: dict[str, str] = {
    "qid": "bytes", "lang": "bytes", "cloze": "bytes", "answer": "bytes", "answer_title": "bytes",
    "source_title": "bytes", "source_page_id": "int", "source_passage_id": "bytes",
}
MLQA_PT_FEATURES: dict[str, str] = {**MLQA_PT_CLOZE_FEATURES, "question": "bytes"}
# Added to both MLQA-PT datasets when they were mined with English answers (`class-jax mine
# --mlqa_pt_answer_lang en`): `answer` is then the English title, and these say what the cloze masks.
MLQA_PT_ENGLISH_ANSWER_FEATURES: dict[str, str] = {
    "target_answer": "bytes", "english_title": "bytes", "answer_lang": "bytes",
}
ENGLISH_ANSWER_DATASETS = ("mlqa_pt_clozes", "mlqa_pt")

# Dataset name -> its features. The dataset name is also its output folder.
FEATURES: dict[str, dict[str, str]] = {
    "clr_pt": CLR_PT_FEATURES,
    "clr_pt_teacher": CLR_PT_TEACHER_FEATURES,
    "mlqa_pt_clozes": MLQA_PT_CLOZE_FEATURES,
    "mlqa_pt": MLQA_PT_FEATURES,
}
_FEATURE_TYPES = ("bytes", "int", "float", "bytes_list", "float_list")


def features_of(dataset: str, answer_lang: str | None = None) -> dict[str, str]:
    """The features of a dataset as mined: FEATURES[dataset], plus the English-answer fields for the MLQA-PT
    datasets when `answer_lang` is "en" (the manifest's `datasets.<dataset>.answer_lang`; None or "target": the
    default records)."""
    if answer_lang == "en" and dataset in ENGLISH_ANSWER_DATASETS:
        return {**FEATURES[dataset], **MLQA_PT_ENGLISH_ANSWER_FEATURES}
    return FEATURES[dataset]


def _gfile():
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    return tf.io.gfile


def join(*parts: str) -> str:
    """Joins path parts with "/" (also right for gs:// and other URL-like roots)."""
    return posixpath.join(*parts)


def num_shards(count: int, records_per_shard: int) -> int:
    """Shards for `count` records: at least one, so every language has a file even when empty."""
    if records_per_shard <= 0:
        raise ValueError(f"records_per_shard must be positive, got {records_per_shard}")
    return max(1, math.ceil(count / records_per_shard))


def shard_of(qid: str, shards: int) -> int:
    """The shard of a record: a stable hash of its qid (not Python's randomised hash)."""
    return int(hashlib.sha1(qid.encode("utf-8")).hexdigest()[:8], 16) % shards


def shard_stem(dataset: str, lang: str, index: int, shards: int) -> str:
    """Relative path of a shard without extension: "<dataset>/<lang>/<dataset>-<lang>-00000-of-00004"."""
    return f"{dataset}/{lang}/{dataset}-{lang}-{index:05d}-of-{shards:05d}"


def to_example_bytes(record: Mapping[str, Any], features: Mapping[str, str]) -> bytes:
    """Serialises a record as a tf.train.Example, deterministically.

    Args:
      record: the record; missing or None scalar fields become "" / 0.
      features: feature name -> type (see the module docstring).

    Returns:
      The serialised Example.

    Raises:
      ValueError: a feature type is unknown.
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    feature = {}
    for name, kind in features.items():
        value = record.get(name)
        if kind == "bytes":
            feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[(value or "").encode("utf-8")]))
        elif kind == "int":
            feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value or 0)]))
        elif kind == "float":
            feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(value or 0.0)]))
        elif kind == "bytes_list":
            feature[name] = tf.train.Feature(
                bytes_list=tf.train.BytesList(value=[item.encode("utf-8") for item in value or ()]))
        elif kind == "float_list":
            feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(x) for x in value or ()]))
        else:
            raise ValueError(f"feature {name!r}: unknown type {kind!r} (known: {', '.join(_FEATURE_TYPES)})")
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    # Map fields serialise in insertion order unless asked to sort: deterministic bytes need the flag.
    return example.SerializeToString(deterministic=True)


def feature_description(dataset: str, answer_lang: str | None = None) -> dict:
    """The tf.io feature description of a dataset, for `seqio.TFExampleDataSource(feature_description=...)`.

    `answer_lang` as in `features_of`; the default description also reads English-answer files (extra features
    are ignored).
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    description = {}
    for name, kind in features_of(dataset, answer_lang).items():
        if kind == "bytes":
            description[name] = tf.io.FixedLenFeature([], tf.string)
        elif kind == "int":
            description[name] = tf.io.FixedLenFeature([], tf.int64)
        elif kind == "float":
            description[name] = tf.io.FixedLenFeature([], tf.float32)
        else:
            # Dense 1-D tensors of per-example length: what SeqIO preprocessors expect (VarLenFeature would give
            # SparseTensors).
            dtype = tf.string if kind == "bytes_list" else tf.float32
            description[name] = tf.io.FixedLenSequenceFeature([], dtype, allow_missing=True)
    return description


def json_line(record: Mapping[str, Any]) -> str:
    """A record as one canonical JSON line (sorted keys, UTF-8 kept)."""
    return json.dumps(record, ensure_ascii=False, sort_keys=True, separators=(",", ":")) + "\n"


def _file_info(out_root: str, relative: str, records: int | None) -> dict:
    digest = hashlib.sha256()
    size = 0
    with _gfile().GFile(join(out_root, relative), "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return {"path": relative, "records": records, "bytes": size, "sha256": digest.hexdigest()}


def _write_atomically(path: str, write: Any) -> None:
    """Calls write(temporary_path), then renames the result to `path`."""
    gfile = _gfile()
    temporary = f"{path}.partial"
    if gfile.exists(temporary):
        gfile.remove(temporary)
    write(temporary)
    gfile.rename(temporary, path, overwrite=True)


def write_shard(out_root: str, dataset: str, lang: str, index: int, shards: int,
                records: Iterable[Mapping[str, Any]], features: Mapping[str, str] | None = None) -> list[dict]:
    """Writes one shard (TFRecord and JSONL), records sorted by qid.

    Args:
      out_root: the output root.
      dataset: a key of FEATURES.
      lang: the language.
      index: the shard index.
      shards: the number of shards of this language.
      records: the shard's records (any order).
      features: the TFRecord features (default FEATURES[dataset]; see `features_of`).

    Returns:
      File infos {"path" (relative to out_root), "records", "bytes", "sha256"} of the two files.
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    ordered = sorted(records, key=lambda record: record["qid"])
    stem = shard_stem(dataset, lang, index, shards)
    _gfile().makedirs(join(out_root, posixpath.dirname(stem)))
    features = FEATURES[dataset] if features is None else features

    def write_tfrecord(path: str) -> None:
        with tf.io.TFRecordWriter(path) as writer:
            for record in ordered:
                writer.write(to_example_bytes(record, features))

    def write_jsonl(path: str) -> None:
        with _gfile().GFile(path, "wb") as f:
            f.write("".join(json_line(record) for record in ordered).encode("utf-8"))

    _write_atomically(join(out_root, f"{stem}.tfrecord"), write_tfrecord)
    _write_atomically(join(out_root, f"{stem}.jsonl"), write_jsonl)
    return [_file_info(out_root, f"{stem}.tfrecord", len(ordered)), _file_info(out_root, f"{stem}.jsonl",
                                                                                 len(ordered))]


def jsonl_shards(out_root: str, dataset: str, lang: str) -> list[str]:
    """The JSONL shard paths of one dataset and language, in shard order."""
    return sorted(_gfile().glob(join(out_root, dataset, lang, f"{dataset}-{lang}-*-of-*.jsonl")))


def read_jsonl_file(path: str) -> Iterator[dict]:
    """Records of one JSONL file (plain or .gz, local or remote)."""
    with _gfile().GFile(path, "rb") as raw:
        stream = gzip.GzipFile(fileobj=raw) if path.endswith(".gz") else raw
        for line in stream:
            if line.strip():
                yield json.loads(line.decode("utf-8"))


def read_dataset(out_root: str, dataset: str, lang: str) -> Iterator[dict]:
    """Every record of one dataset and language, shard by shard (each sorted by qid)."""
    for path in jsonl_shards(out_root, dataset, lang):
        yield from read_jsonl_file(path)


def read_tfrecord_examples(path: str) -> list[dict]:
    """Decodes a TFRecord shard back into plain dicts (for checks and tests).

    Raises:
      UserError: the file is missing, corrupt or truncated, or a record is not a tf.train.Example; the message
        names the file and the record number.
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from google.protobuf import message  # pylint: disable=import-outside-toplevel

    from class_jax.runtime.errors import UserError  # pylint: disable=import-outside-toplevel

    records = []
    iterator = tf.data.TFRecordDataset([path]).as_numpy_iterator()
    consumed = 0  # bytes of the records read: 8 (length) + 4 (its CRC) + data + 4 (data CRC) each
    while True:
        try:
            raw = next(iterator)
        except StopIteration:
            size = tf.io.gfile.stat(path).length
            if consumed != size:  # tf.data ends quietly at a truncated last record
                raise UserError(f"{path}: record {len(records) + 1}: the file is truncated ({size - consumed} "
                                f"bytes after the last complete record)") from None
            break
        except tf.errors.OpError as e:
            problem = " ".join(str(e.message).split())[:200]
            raise UserError(f"{path}: record {len(records) + 1}: unreadable TFRecord ({type(e).__name__}: "
                            f"{problem})") from None
        consumed += len(raw) + 16
        try:
            example = tf.train.Example.FromString(raw)
        except message.DecodeError:
            raise UserError(f"{path}: record {len(records) + 1}: not a tf.train.Example") from None
        record = {}
        for name, feature in example.features.feature.items():
            kind = feature.WhichOneof("kind")
            values = list(getattr(feature, kind).value)
            record[name] = [v.decode("utf-8") for v in values] if kind == "bytes_list" else values
        records.append(record)
    return records


def write_json_atomic(path: str, value: Any) -> None:
    """Writes a JSON document (sorted keys, indented) under its final name only when complete."""

    def write(temporary: str) -> None:
        with _gfile().GFile(temporary, "w") as f:
            f.write(json.dumps(value, ensure_ascii=False, sort_keys=True, indent=2) + "\n")

    _gfile().makedirs(posixpath.dirname(path) or ".")
    _write_atomically(path, write)


def read_json(path: str) -> Any:
    """Reads a JSON document, or returns None when the file does not exist."""
    if not _gfile().exists(path):
        return None
    with _gfile().GFile(path, "r") as f:
        return json.loads(f.read())


def files_intact(out_root: str, files: list[dict]) -> bool:
    """Whether every listed file exists with its recorded size (a cheap check before skipping a step)."""
    gfile = _gfile()
    for info in files:
        path = join(out_root, info["path"])
        if not gfile.exists(path) or gfile.stat(path).length != info["bytes"]:
            return False
    return True


def remove_tree(path: str) -> None:
    """Deletes a folder and everything under it, if present."""
    if _gfile().exists(path):
        _gfile().rmtree(path)


def remove_file(path: str) -> None:
    if _gfile().exists(path):
        _gfile().remove(path)


def make_dirs(path: str) -> None:
    _gfile().makedirs(path)


def list_files(folder: str, suffix: str) -> list[str]:
    """Files directly in `folder` whose names end with `suffix` (none when the folder is missing)."""
    if not _gfile().isdir(folder):
        return []
    return sorted(join(folder, name) for name in _gfile().listdir(folder) if name.endswith(suffix))


def copy_tree(source: str, destination: str) -> None:
    """Copies a folder tree between any two tf.io.gfile locations."""
    gfile = _gfile()
    for directory, _, names in gfile.walk(source):
        target = join(destination, posixpath.relpath(directory, source))
        gfile.makedirs(target)
        for name in names:
            gfile.copy(join(directory, name), join(target, name), overwrite=True)


def write_text_file(out_root: str, relative: str, text: str, records: int | None) -> dict:
    """Writes a text file atomically under out_root; returns its file info."""
    path = join(out_root, relative)
    _gfile().makedirs(posixpath.dirname(path))

    def write(temporary: str) -> None:
        with _gfile().GFile(temporary, "wb") as f:
            f.write(text.encode("utf-8"))

    _write_atomically(path, write)
    return _file_info(out_root, relative, records)
