"""The stage-1 neural teacher: read once at start, placed on the mesh, frozen, and tied to the run that uses it.

    from __gin__ import dynamic_registration
    from class_jax.trainer import teacher_checkpoint
    train_script.train.teacher = @teacher_checkpoint.Teacher()
    teacher_checkpoint.Teacher.checkpoint = %TEACHER_CHECKPOINT

A teacher checkpoint is any of:
  * an HF checkpoint directory of a token-mode teacher: ReAtt (`neulab/reatt-large-nq`: T5 with `retrieval_layer` /
    `retrieval_head` in config.json) or the same under the release's names (`retriever_layer` / `retriever_head`);
  * a params directory (`class-jax convert` of such a checkpoint, `class-jax export` of a class_jax model): token
    or pooled mode, whatever its model_config.json says;
  * a class_jax run directory (its latest step); its ModelConfig comes from `Teacher.model`.
The teacher reads its own tokenization: its vocabulary (`spiece.model` in the checkpoint, or `vocab_path`) must
fit its embedding, and the stage-1 task tokenizes the English queries, passages and answers with it
(gin/stages/clr_pt.gin binds both to TEACHER_VOCAB_PATH).

Its parameters are an argument of the train step (not part of the train state): no optimizer slots, not written
into any checkpoint. The run records where they came from in `<model_dir>/teacher.json` (the path and a sha256 of
its files); a resumed run re-reads the teacher from there and refuses one whose files changed.
"""

import dataclasses
import hashlib
import json
import logging
import pathlib
from typing import Any, Optional

import jax
import numpy as np

from class_jax.checkpoints import param_layout
from class_jax.checkpoints import params_io
from class_jax.models.class_model import CLASSModel
from class_jax.runtime import partitioning
from class_jax.runtime.errors import UserError
from class_jax.trainer import param_sources
from class_jax.trainer import train_state

PyTree = Any
RECORD_FILE = "teacher.json"
HF_CONFIG = "config.json"
# Vocabularies pad their embedding past the pieces (T5: 32000 pieces + 100 sentinels in 32128 rows; mT5: 250100 in
# 250112): rows beyond the pieces by more than this mean another model's vocabulary.
MAX_EMBEDDING_PADDING = 256


@dataclasses.dataclass(frozen=True)
class Teacher:
    """Which teacher stage 1 distils, as gin configures it.

    Attributes:
      checkpoint: the teacher's checkpoint (see the module docstring).
      model: the teacher's model for a run directory (which stores no ModelConfig); for HF and params
        directories their own config is used and this is ignored.
      vocab_path: the teacher's SentencePiece model (default: `spiece.model` in `checkpoint`).
    """

    checkpoint: str
    model: Optional[CLASSModel] = None
    vocab_path: Optional[str] = None


@dataclasses.dataclass
class LoadedTeacher:
    """A teacher placed on the mesh."""

    model: CLASSModel
    params: PyTree
    checkpoint: str
    fingerprint: str


def _files_fingerprint(directory: pathlib.Path) -> str:
    """sha256 over the relative paths and contents of every file under `directory` (sorted)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(directory)).encode() + b"\0")
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()


def _vocabulary_pieces(path: pathlib.Path) -> int:
    import sentencepiece  # pylint: disable=import-outside-toplevel

    processor = sentencepiece.SentencePieceProcessor()
    try:
        processor.Load(str(path))
    except (OSError, RuntimeError) as e:
        raise UserError(f"{path}: not a sentencepiece model ({e})") from e
    return processor.GetPieceSize()


def teacher_vocab_path(checkpoint: str, vocab_path: Optional[str] = None) -> str:
    """The teacher's SentencePiece model: `vocab_path`, else `spiece.model` in the checkpoint (gin: the task's)."""
    return vocab_path or str(pathlib.Path(checkpoint) / params_io.SPIECE_FILE)


def check_vocabulary(teacher: Teacher, vocab_size: int) -> pathlib.Path:
    """The teacher's vocabulary file, checked against its embedding.

    Returns:
      The vocabulary path.

    Raises:
      UserError: no vocabulary, or one whose size does not fit the embedding's `vocab_size` rows.
    """
    path = pathlib.Path(teacher_vocab_path(teacher.checkpoint, teacher.vocab_path))
    if not path.is_file():
        raise UserError(f"teacher {teacher.checkpoint}: no vocabulary ({path} does not exist); the teacher reads its "
                        "own tokenization: put its spiece.model there or set TEACHER_VOCAB_PATH")
    pieces = _vocabulary_pieces(path)
    if not pieces <= vocab_size <= pieces + MAX_EMBEDDING_PADDING:
        raise UserError(f"teacher {teacher.checkpoint}: its vocabulary {path} has {pieces} pieces but its embedding "
                        f"has {vocab_size} rows (expected {pieces}..{pieces + MAX_EMBEDDING_PADDING}): another "
                        "model's vocabulary?")
    return path


def _read(teacher: Teacher) -> tuple[dict[str, np.ndarray], CLASSModel]:
    """Host parameters ('/'-joined paths) and the model of the teacher checkpoint."""
    directory = pathlib.Path(teacher.checkpoint)
    if not directory.is_dir():
        raise UserError(f"teacher checkpoint {directory}: no such directory")
    if params_io.is_checkpoint_dir(directory):
        params, config = params_io.load_params(directory)
        return param_layout.flatten(params), CLASSModel(config)
    if (directory / HF_CONFIG).is_file():
        from class_jax.checkpoints.hf import reader  # pylint: disable=import-outside-toplevel  (torch-free, but big)

        imported = reader.load_hf_checkpoint(directory, overrides={"dropout_rate": 0.0})
        if imported.config.retrieval_mode != "token":
            raise UserError(f"{directory / HF_CONFIG}: a teacher checkpoint in the HF layout needs a retrieval "
                            "layer and head (ReAtt's retrieval_layer / retrieval_head, or the release's "
                            "retriever_layer / retriever_head); convert a pooled class_jax teacher with "
                            "`class-jax convert` instead")
        return dict(imported.params), CLASSModel(imported.config)
    if teacher.model is None:
        raise UserError(f"teacher checkpoint {directory}: neither a params directory nor an HF checkpoint "
                        f"({HF_CONFIG}); a class_jax run directory as teacher also needs its model (TEACHER_MODEL)")
    params, _ = param_sources.read_run_params_to_host(directory, None)
    return param_layout.flatten(params), teacher.model


def _check_record(model_dir: pathlib.Path, checkpoint: str, fingerprint: str, resuming: bool) -> None:
    """Writes the run's teacher record, or checks a resumed run against it.

    Raises:
      UserError: a resumed run whose teacher is another checkpoint, or whose files changed.
    """
    record_path = model_dir / RECORD_FILE
    if resuming and record_path.is_file():
        record = json.loads(record_path.read_text())
        if record["checkpoint"] != checkpoint:
            raise UserError(f"{record_path}: this run was trained with the teacher {record['checkpoint']}, not "
                            f"{checkpoint}; resume with the same teacher or start a new run (--start_fresh)")
        if record["fingerprint"] != fingerprint:
            raise UserError(f"{record_path}: the teacher checkpoint {checkpoint} changed since this run started "
                            f"(sha256 {fingerprint[:12]}, recorded {record['fingerprint'][:12]}); restore its files "
                            "or start a new run (--start_fresh)")
        return
    temporary = record_path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps({"checkpoint": checkpoint, "fingerprint": fingerprint}, indent=2))
    temporary.replace(record_path)


def load_teacher(teacher: Teacher, partitioner: partitioning.Partitioner, model_dir: pathlib.Path,
                 resuming: bool) -> LoadedTeacher:
    """Reads the teacher once, checks its vocabulary and the run's record, and places it by the logical rules.

    Args:
      teacher: what gin configured.
      partitioner: the student's mesh and rules (the teacher is sharded like it).
      model_dir: the run's directory (its teacher record).
      resuming: the run restored its own checkpoint (its record must match).

    Returns:
      The placed teacher.

    Raises:
      UserError: an unreadable checkpoint, a missing or mismatched vocabulary, a teacher without a retrieval
        layer / head, or a resumed run whose teacher changed.
    """
    checkpoint = str(pathlib.Path(teacher.checkpoint).absolute())
    flat, model = _read(teacher)
    check_vocabulary(teacher, model.config.vocab_size)
    fingerprint = _files_fingerprint(pathlib.Path(checkpoint))
    _check_record(model_dir, checkpoint, fingerprint, resuming)
    abstract, shardings = train_state.build_param_layout(model, partitioner, CLASSModel.init_shapes())
    expected = param_layout.flatten(jax.tree_util.tree_map(lambda x: x.shape, abstract))
    problems = [f"{name}: {tuple(np.shape(flat[name]))} != {shape}" if name in flat else f"{name}: missing"
                for name, shape in expected.items() if name not in flat or tuple(np.shape(flat[name])) != shape]
    if problems:
        raise UserError(f"teacher checkpoint {checkpoint} does not fit its model config: {'; '.join(problems[:5])}")
    host = param_layout.unflatten({name: np.asarray(flat[name], np.float32) for name in expected})
    params = jax.tree_util.tree_map(lambda value, sharding: partitioning.global_array_from_host(value, sharding),
                                    host, shardings)
    logging.info("Stage-1 teacher: %s (%s mode, %d layers, retriever layer %d), frozen, sha256 %s.", checkpoint,
                 model.config.retrieval_mode, model.config.num_encoder_layers, model.config.retriever_layer_index,
                 fingerprint[:12])
    return LoadedTeacher(model=model, params=params, checkpoint=checkpoint, fingerprint=fingerprint)
