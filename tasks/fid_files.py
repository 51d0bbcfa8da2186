"""FiD example files: one query with its k passages attached as text, the input of every FiD training / eval task.

Whoever retrieves passages (the stage-1 teacher, the in-training retrieval refresh, an evaluation retrieval run)
writes its output with `write_fid_examples`; SeqIO tasks read it with `FiDFileDataSource` (see
`tasks/fid_tasks.py`). A FiD directory holds

    DIR/fid-00000-of-00004.tfrecord ...   tf.train.Example records, record i of the input in shard i % num_shards
    DIR/fid_manifest.json                 written last: its presence marks the directory complete

Every record of a directory has exactly k passage slots (k = `num_passages`, fixed per directory); a query with
fewer passages is padded with empty slots (id, title and text "", score 0) and `num_passages` says how many are
real. Passages are stored best first (the order the retriever ranked them), so a task keeping the first k' < k
keeps the top k'.

tf.train.Example features (every feature is always written, so one parser reads every FiD directory; which
optional fields carry data is recorded in the manifest under "has"):

    id                 bytes                 query id
    lang               bytes                 language of `question` (e.g. "ja")
    question           bytes                 the query text, unformatted (the task adds "question: ")
    answers            bytes, list (>= 0)    gold answers, for evaluation
    target             bytes                 the answer to train on ("" for eval-only files)
    english_question   bytes                 stage 1: the parallel English cloze ("" when absent)
    source_passage_id  bytes                 MLQA-PT: the passage the query was made from ("" when absent)
    passage_ids        bytes, list of k      passage ids ("" in empty slots)
    passage_titles     bytes, list of k      passage titles
    passage_texts      bytes, list of k      passage texts
    passage_scores     float, list of k      the retriever's scores (0 in empty slots)
    teacher_scores     float, list of k      stage 1: the teacher's scores of the same passages (0 when absent)
    num_passages       int64                 real passages (<= k); the rest are empty slots

The manifest (JSON) records: format, version, num_passages (k), num_examples, num_shards, shards (file name,
examples, bytes), has (english_question / teacher_scores / source_passage_id / target: whether records carry
them) and the writer's metadata (e.g. the training step and retriever of a refresh round).

Writing is deterministic (equal records and settings give byte-identical files: examples are serialised with
sorted map keys, shards are assigned round-robin) and atomic per file (temporary name, then rename; manifest
last). Paths may be local or anything tf.io.gfile knows (gs://...).
"""

import dataclasses
import json
import posixpath
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence

import seqio
import tensorflow as tf

from class_jax.runtime.errors import UserError

FORMAT_NAME = "class_jax.fid_examples"
FORMAT_VERSION = 1
MANIFEST_NAME = "fid_manifest.json"
SHARD_PREFIX = "fid"
_TEMP_SUFFIX = ".partial"

# Feature name -> (kind, per-passage). Kinds: "bytes" (one UTF-8 string), "bytes_list", "float_list", "int".
FEATURES: dict[str, tuple[str, bool]] = {
    "id": ("bytes", False),
    "lang": ("bytes", False),
    "question": ("bytes", False),
    "answers": ("bytes_list", False),
    "target": ("bytes", False),
    "english_question": ("bytes", False),
    "source_passage_id": ("bytes", False),
    "passage_ids": ("bytes_list", True),
    "passage_titles": ("bytes_list", True),
    "passage_texts": ("bytes_list", True),
    "passage_scores": ("float_list", True),
    "teacher_scores": ("float_list", True),
    "num_passages": ("int", False),
}
# Optional record fields whose presence the manifest records (all records of a directory agree).
OPTIONAL_FIELDS = ("english_question", "teacher_scores", "source_passage_id", "target")


@dataclasses.dataclass(frozen=True)
class FiDPassage:
    """One attached passage.

    Attributes:
      id: passage id (e.g. "en:12:0").
      title: article title.
      text: passage text.
      score: the retriever's score.
    """

    id: str
    title: str
    text: str
    score: float = 0.0


@dataclasses.dataclass(frozen=True)
class FiDExample:
    """One query with its passages.

    Attributes:
      id: query id.
      lang: the query's language.
      question: the query text (unformatted).
      answers: gold answers (may be empty for training-only data).
      passages: at most k passages, best first.
      target: the answer to train on ("" for eval-only data).
      english_question: stage 1: the parallel English cloze.
      teacher_scores: stage 1: one teacher score per passage.
      source_passage_id: MLQA-PT: the passage the query came from.
    """

    id: str
    lang: str
    question: str
    answers: tuple[str, ...]
    passages: tuple[FiDPassage, ...]
    target: str = ""
    english_question: Optional[str] = None
    teacher_scores: Optional[tuple[float, ...]] = None
    source_passage_id: Optional[str] = None

    def presence(self) -> dict[str, bool]:
        """Which optional fields this example carries."""
        return {"english_question": self.english_question is not None,
                "teacher_scores": self.teacher_scores is not None,
                "source_passage_id": self.source_passage_id is not None,
                "target": bool(self.target)}


def _string(record: Mapping[str, Any], key: str, where: str, optional: bool = False) -> Optional[str]:
    value = record.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise UserError(f"{where}: field {key!r} must be a string, got {type(value).__name__}")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"{where}: expected a number, got {type(value).__name__}")
    return float(value)


def example_from_record(record: FiDExample | Mapping[str, Any], where: str) -> FiDExample:
    """Validates a record (a FiDExample or a dict with the FiDExample fields; passages as dicts).

    Args:
      record: the record.
      where: its position for messages (e.g. "record 12").

    Returns:
      The example.

    Raises:
      UserError: a field is missing or of the wrong type, or teacher_scores do not match the passages.
    """
    if isinstance(record, FiDExample):
        record = dataclasses.asdict(record)
    if not isinstance(record, Mapping):
        raise UserError(f"{where}: expected a FiD record (dict), got {type(record).__name__}")
    example_id = _string(record, "id", where)
    where = f"{where} (id {example_id!r})"
    answers = record.get("answers", ())
    if isinstance(answers, str) or not all(isinstance(a, str) for a in answers):
        raise UserError(f"{where}: 'answers' must be a list of strings")
    passages = []
    for i, passage in enumerate(record.get("passages", ())):
        at = f"{where}: passages[{i}]"
        if isinstance(passage, FiDPassage):
            passages.append(passage)
            continue
        if not isinstance(passage, Mapping):
            raise UserError(f"{at}: expected a dict with id, title, text, score")
        passages.append(FiDPassage(id=_string(passage, "id", at), title=_string(passage, "title", at),
                                   text=_string(passage, "text", at),
                                   score=_number(passage.get("score", 0.0), f"{at}: score")))
    teacher_scores = record.get("teacher_scores")
    if teacher_scores is not None:
        teacher_scores = tuple(_number(s, f"{where}: teacher_scores") for s in teacher_scores)
        if len(teacher_scores) != len(passages):
            raise UserError(f"{where}: {len(teacher_scores)} teacher_scores for {len(passages)} passages")
    target = record.get("target") or ""
    if not isinstance(target, str):
        raise UserError(f"{where}: field 'target' must be a string")
    return FiDExample(id=example_id, lang=_string(record, "lang", where), question=_string(record, "question", where),
                      answers=tuple(answers), passages=tuple(passages), target=target,
                      english_question=_string(record, "english_question", where, optional=True),
                      teacher_scores=teacher_scores,
                      source_passage_id=_string(record, "source_passage_id", where, optional=True))


def example_to_bytes(example: FiDExample, num_passages: int) -> bytes:
    """Serialises an example as a tf.train.Example with k = `num_passages` slots (deterministic bytes).

    Raises:
      UserError: the example has more than `num_passages` passages.
    """
    real = len(example.passages)
    if real > num_passages:
        raise UserError(f"example {example.id!r}: {real} passages do not fit the file's k = {num_passages}; "
                        f"keep the top {num_passages} when retrieving")
    padding = num_passages - real

    def strings(values: Sequence[str]) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode("utf-8") for v in values]))

    def floats(values: Sequence[float]) -> tf.train.Feature:
        return tf.train.Feature(float_list=tf.train.FloatList(value=list(values)))

    passages = example.passages
    feature = {
        "id": strings([example.id]),
        "lang": strings([example.lang]),
        "question": strings([example.question]),
        "answers": strings(example.answers),
        "target": strings([example.target]),
        "english_question": strings([example.english_question or ""]),
        "source_passage_id": strings([example.source_passage_id or ""]),
        "passage_ids": strings([p.id for p in passages] + [""] * padding),
        "passage_titles": strings([p.title for p in passages] + [""] * padding),
        "passage_texts": strings([p.text for p in passages] + [""] * padding),
        "passage_scores": floats([p.score for p in passages] + [0.0] * padding),
        "teacher_scores": floats(list(example.teacher_scores or [0.0] * real) + [0.0] * padding),
        "num_passages": tf.train.Feature(int64_list=tf.train.Int64List(value=[real])),
    }
    proto = tf.train.Example(features=tf.train.Features(feature=feature))
    return proto.SerializeToString(deterministic=True)


def shard_name(index: int, num_shards: int) -> str:
    """File name of one shard: fid-00000-of-00004.tfrecord."""
    return f"{SHARD_PREFIX}-{index:05d}-of-{num_shards:05d}.tfrecord"


def _clear_previous(gfile, out_dir: str, overwrite: bool) -> None:
    """Removes shards / temporaries of an earlier or killed write, refusing to replace a complete one."""
    if gfile.exists(posixpath.join(out_dir, MANIFEST_NAME)):
        if not overwrite:
            raise UserError(f"{out_dir}: already holds FiD examples ({MANIFEST_NAME}); pass overwrite=True to "
                            f"replace them")
        gfile.remove(posixpath.join(out_dir, MANIFEST_NAME))
    for leftover in gfile.glob(posixpath.join(out_dir, f"{SHARD_PREFIX}-*")):
        gfile.remove(leftover)


def write_fid_examples(records: Iterable[FiDExample | Mapping[str, Any]], out_dir: str, num_shards: int, *,
                       num_passages: int, metadata: Optional[Mapping[str, Any]] = None,
                       overwrite: bool = False) -> dict[str, Any]:
    """Writes FiD examples to a directory of sharded TFRecord files plus a manifest (streaming).

    Args:
      records: FiDExample instances or dicts with their fields (passages as dicts with id/title/text/score),
        consumed once, in order.
      out_dir: the directory (created; local path or gs://...).
      num_shards: TFRecord shards; record i goes to shard i % num_shards.
      num_passages: k, the passage slots of every record (records with fewer are padded).
      metadata: JSON-serialisable provenance stored in the manifest (step, retriever, ...).
      overwrite: replace a complete directory already at `out_dir`.

    Returns:
      The manifest.

    Raises:
      UserError: a malformed record (named by position and id), records disagreeing on which optional fields
        they carry, more passages than k, or an existing directory without `overwrite`.
      ValueError: num_shards or num_passages < 1.
    """
    if num_shards < 1 or num_passages < 1:
        raise ValueError(f"num_shards ({num_shards}) and num_passages ({num_passages}) must be >= 1")
    gfile = tf.io.gfile
    gfile.makedirs(out_dir)
    _clear_previous(gfile, out_dir, overwrite)
    names = [shard_name(i, num_shards) for i in range(num_shards)]
    temporaries = [posixpath.join(out_dir, name + _TEMP_SUFFIX) for name in names]
    writers = [tf.io.TFRecordWriter(path) for path in temporaries]
    counts = [0] * num_shards
    presence: Optional[dict[str, bool]] = None
    first_id = ""
    try:
        for index, record in enumerate(records):
            example = example_from_record(record, f"record {index}")
            if presence is None:
                presence, first_id = example.presence(), example.id
            elif example.presence() != presence:
                differing = sorted(k for k, v in example.presence().items() if v != presence[k])
                raise UserError(f"record {index} (id {example.id!r}): optional fields {differing} differ from "
                                f"the first record (id {first_id!r}); every record of a FiD file must agree")
            writers[index % num_shards].write(example_to_bytes(example, num_passages))
            counts[index % num_shards] += 1
    finally:
        for writer in writers:
            writer.close()
    shards = []
    for name, temporary, count in zip(names, temporaries, counts):
        final = posixpath.join(out_dir, name)
        gfile.rename(temporary, final, overwrite=True)
        shards.append({"file": name, "examples": count, "bytes": gfile.stat(final).length})
    manifest = {
        "format": FORMAT_NAME, "version": FORMAT_VERSION, "num_passages": num_passages,
        "num_examples": sum(counts), "num_shards": num_shards, "shards": shards,
        "has": presence or {name: False for name in OPTIONAL_FIELDS},
        "features": {name: kind for name, (kind, _) in FEATURES.items()},
        "metadata": dict(metadata or {}),
    }
    manifest_path = posixpath.join(out_dir, MANIFEST_NAME)
    with gfile.GFile(manifest_path + _TEMP_SUFFIX, "w") as f:
        f.write(json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    gfile.rename(manifest_path + _TEMP_SUFFIX, manifest_path, overwrite=True)
    return manifest


def read_manifest(fid_dir: str) -> dict[str, Any]:
    """Reads and checks a FiD directory's manifest and that its shards are whole.

    Raises:
      UserError: no such directory, no manifest (an incomplete write), another format or version, invalid
        JSON, or a shard missing or of another size than recorded (naming the file).
    """
    gfile = tf.io.gfile
    path = posixpath.join(fid_dir, MANIFEST_NAME)
    if not gfile.isdir(fid_dir):
        raise UserError(f"{fid_dir}: no such FiD example directory")
    if not gfile.exists(path):
        raise UserError(f"{path}: missing; {fid_dir} is not a complete FiD example directory (write it with "
                        f"write_fid_examples)")
    try:
        with gfile.GFile(path, "r") as f:
            manifest = json.loads(f.read())
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: line {e.lineno}: not valid JSON: {e.msg}") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise UserError(f"{path}: not a FiD example manifest (format {FORMAT_NAME!r} expected)")
    if manifest.get("version") != FORMAT_VERSION:
        raise UserError(f"{path}: FiD format version {manifest.get('version')!r}; this class_jax reads "
                        f"version {FORMAT_VERSION}")
    for shard in manifest["shards"]:
        shard_path = posixpath.join(fid_dir, shard["file"])
        if not gfile.exists(shard_path):
            raise UserError(f"{shard_path}: shard listed in {MANIFEST_NAME} is missing")
        size = gfile.stat(shard_path).length
        if size != shard["bytes"]:
            raise UserError(f"{shard_path}: {size} bytes, the manifest records {shard['bytes']} (truncated or "
                            f"replaced)")
    return manifest


def shard_paths(fid_dir: str, manifest: Mapping[str, Any]) -> list[str]:
    """The shard files of a FiD directory, in shard order."""
    return [posixpath.join(fid_dir, shard["file"]) for shard in manifest["shards"]]


def feature_description() -> dict[str, Any]:
    """The tf.io parsing spec of a FiD record (lists parse as dense 1-D tensors)."""
    dtypes = {"bytes": tf.string, "bytes_list": tf.string, "float_list": tf.float32}
    spec = {}
    for name, (kind, _) in FEATURES.items():
        if kind == "int":
            spec[name] = tf.io.FixedLenFeature([], tf.int64)
        elif kind == "bytes":
            spec[name] = tf.io.FixedLenFeature([], tf.string)
        else:
            spec[name] = tf.io.RaggedFeature(dtypes[kind])
    return spec


def _example_from_features(features: Mapping[str, Any]) -> FiDExample:
    """A parsed record (numpy values) back to a FiDExample; empty slots and absent optional fields dropped."""

    def text(value: Any) -> str:
        return value.decode("utf-8") if isinstance(value, bytes) else str(value)

    real = int(features["num_passages"])
    passages = tuple(FiDPassage(id=text(features["passage_ids"][i]), title=text(features["passage_titles"][i]),
                                text=text(features["passage_texts"][i]), score=float(features["passage_scores"][i]))
                     for i in range(real))
    return FiDExample(id=text(features["id"]), lang=text(features["lang"]), question=text(features["question"]),
                      answers=tuple(text(a) for a in features["answers"]), passages=passages,
                      target=text(features["target"]),
                      english_question=text(features["english_question"]) if features["_has_english"] else None,
                      teacher_scores=tuple(float(s) for s in features["teacher_scores"][:real])
                      if features["_has_teacher"] else None,
                      source_passage_id=text(features["source_passage_id"]) if features["_has_source"] else None)


def read_fid_examples(fid_dir: str) -> Iterator[FiDExample]:
    """Yields a FiD directory's examples in the order they were written (for tools and tests).

    Raises:
      UserError: see `read_manifest`; a corrupt record names its shard and record number.
    """
    manifest = read_manifest(fid_dir)
    has = manifest["has"]
    spec = feature_description()
    iterators = []
    for path in shard_paths(fid_dir, manifest):
        iterators.append((path, iter(tf.data.TFRecordDataset(path).as_numpy_iterator())))
    for index in range(manifest["num_examples"]):
        path, iterator = iterators[index % len(iterators)]
        record_number = index // len(iterators)
        try:
            serialized = next(iterator)
            parsed = {k: v.numpy() for k, v in tf.io.parse_single_example(serialized, spec).items()}
        except (StopIteration, tf.errors.OpError) as e:
            raise UserError(f"{path}: record {record_number}: cannot be read ({type(e).__name__})") from e
        parsed.update(_has_english=has["english_question"], _has_teacher=has["teacher_scores"],
                      _has_source=has["source_passage_id"])
        yield _example_from_features(parsed)


FiDDirs = str | Sequence[str]


def resolve_fid_dirs(spec: FiDDirs) -> list[str]:
    """FiD directories named by a path, a glob of directories ("/run/fid/round-*"), or a list of either.

    Raises:
      UserError: nothing matches a glob, or the spec is empty.
    """
    items = [spec] if isinstance(spec, str) else list(spec)
    if not items:
        raise UserError("no FiD example directory given")
    dirs = []
    for item in items:
        if any(c in item for c in "*?["):
            matched = sorted(tf.io.gfile.glob(item))
            if not matched:
                raise UserError(f"{item}: no FiD example directory matches")
            dirs.extend(matched)
        else:
            dirs.append(item)
    return dirs


class FiDFileDataSource(seqio.DataSource):
    """SeqIO source over FiD directories; yields the raw features of the module docstring.

    Directories are resolved and their manifests checked when a dataset is built (not at registration), so a task
    may be registered before its files exist, and a missing or truncated file fails at load naming the path.
    Hosts read disjoint shard files when there are enough of them, otherwise disjoint records.
    """

    def __init__(self, split_to_dirs: Mapping[str, FiDDirs], required_fields: Sequence[str] = (),
                 cycle_length: int = 16):
        """Builds the source.

        Args:
          split_to_dirs: split name -> FiD directories (see `resolve_fid_dirs`).
          required_fields: optional fields (OPTIONAL_FIELDS) the records must carry, e.g. the teacher scores of
            stage 1; checked against each manifest when a dataset is built.
          cycle_length: shards read concurrently.

        Raises:
          ValueError: a required field that is not an optional field.
        """
        super().__init__(splits=tuple(split_to_dirs))
        unknown = sorted(set(required_fields) - set(OPTIONAL_FIELDS))
        if unknown:
            raise ValueError(f"required_fields {unknown} are not optional FiD fields {OPTIONAL_FIELDS}")
        self._split_to_dirs = dict(split_to_dirs)
        self._required_fields = tuple(required_fields)
        self._cycle_length = cycle_length

    @property
    def supports_arbitrary_sharding(self) -> bool:
        return True

    def manifests(self, split: str) -> list[tuple[str, dict[str, Any]]]:
        """(directory, manifest) of each directory of `split`, checked.

        Raises:
          UserError: an unknown split, a bad directory (see `read_manifest`), or records without a required field.
        """
        if split not in self._split_to_dirs:
            raise UserError(f"FiD source has no split {split!r} (it has {sorted(self._split_to_dirs)})")
        manifests = [(d, read_manifest(d)) for d in resolve_fid_dirs(self._split_to_dirs[split])]
        for fid_dir, manifest in manifests:
            missing = [field for field in self._required_fields if not manifest["has"].get(field)]
            if missing:
                raise UserError(f"{fid_dir}: the records lack {missing}, which this task needs")
        return manifests

    def list_shards(self, split: str) -> Sequence[str]:
        return [path for fid_dir, manifest in self.manifests(split) for path in shard_paths(fid_dir, manifest)]

    def num_input_examples(self, split: str) -> int:
        return sum(manifest["num_examples"] for _, manifest in self.manifests(split))

    def get_dataset(self, split: str = "train", shuffle: bool = True, seed: Optional[int] = None,
                    shard_info: Optional[seqio.ShardInfo] = None, *, sequence_length: Optional[Any] = None,
                    use_cached: bool = False, num_epochs: Optional[int] = 1) -> tf.data.Dataset:
        del sequence_length, use_cached, num_epochs  # the Task repeats and trims
        files = list(self.list_shards(split))
        shard_files = shard_info is not None and len(files) >= shard_info.num_shards
        files_ds = tf.data.Dataset.from_tensor_slices(files)
        if shard_files:
            files_ds = files_ds.shard(shard_info.num_shards, shard_info.index)
        if shuffle:
            files_ds = files_ds.shuffle(len(files), seed=seed)
        ds = files_ds.interleave(tf.data.TFRecordDataset, cycle_length=self._cycle_length,
                                 num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        if shard_info is not None and not shard_files:
            ds = ds.shard(shard_info.num_shards, shard_info.index)
        spec = feature_description()
        return ds.map(lambda serialized: tf.io.parse_single_example(serialized, spec),
                      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
