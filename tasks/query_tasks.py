"""Query-level SeqIO tasks: the questions of XOR-TyDi, MKQA, NQ-open and the demo, tokenised as CLASS queries.

They are what retrieval reads to build FiD example files (tasks/fid_files.py), and their answers are the gold
the evaluation tasks score against. Features (see tasks/preprocessors.py):

    query_tokens  int32 [<= Lq]  `question: {q}`, no EOS
    targets       int32 [<= La]  the first answer + EOS
    + the raw id, lang, question, answers (and targets_pretokenized)

Task names and splits ("validation" is the dev set):

    xor_retrieve          train / validation   XOR-Retrieve (English-span answers)
    xor_full              train / validation   XOR-Full (answers in the question's language)
    mkqa_<lang>, mkqa     validation           MKQA, one task per language (zh_cn, ...) and their mixture
    nq_open               train / validation   NQ-open from DPR's nq-{train,dev}.qa.csv
    nq_open_tfds          train / validation   NQ-open from TFDS natural_questions_open
    demo_xor_retrieve     train / validation   the demo wiki's question sets (`class-jax make-demo-wiki`)
    demo_xor_full         train / validation

Files are located by the registering functions' arguments. Importing `class_jax.tasks` registers the tasks
whose locations are given by environment variables: CLASS_JAX_XOR_TYDI_DIR (the official file names inside),
CLASS_JAX_MKQA_FILE, CLASS_JAX_NQ_OPEN_DIR (nq-train.qa.csv / nq-dev.qa.csv), CLASS_JAX_DEMO_DIR (a demo wiki
folder); nq_open_tfds is always registered (TFDS reads its own data dir, $TFDS_DATA_DIR).
"""

import functools
import os
import pathlib
from typing import Mapping, Optional, Sequence

import seqio

from class_jax.runtime.errors import UserError
from class_jax.evaluation import mkqa
from class_jax.tasks import preprocessors
from class_jax.tasks import query_sources
from class_jax.tasks import vocab

# XOR-TyDi's official file names: (task, split) -> file.
XOR_TYDI_FILES = {
    ("xor_retrieve", "train"): "xor_train_retrieve_eng_span.jsonl",
    ("xor_retrieve", "validation"): "xor_dev_retrieve_eng_span_v1_1.jsonl",
    ("xor_full", "train"): "xor_train_full.jsonl",
    ("xor_full", "validation"): "xor_dev_full_v1_1.jsonl",
}
NQ_CSV_FILES = {"train": "nq-train.qa.csv", "validation": "nq-dev.qa.csv"}


def query_output_features(vocabulary: seqio.Vocabulary) -> dict[str, seqio.Feature]:
    """query_tokens (no EOS) and targets (EOS added by append_eos_after_trim)."""
    return {"query_tokens": seqio.Feature(vocabulary, add_eos=False), "targets": seqio.Feature(vocabulary)}


def _register(name: str, source: seqio.DataSource, vocabulary: seqio.Vocabulary,
              extra_preprocessors: Sequence = ()) -> seqio.Task:
    seqio.TaskRegistry.remove(name)
    return seqio.TaskRegistry.add(
        name, source=source,
        preprocessors=[*extra_preprocessors, preprocessors.query_inputs, seqio.preprocessors.append_eos_after_trim],
        output_features=query_output_features(vocabulary))


def register_question_file_task(name: str, split_to_path: Mapping[str, str | pathlib.Path],
                                vocabulary: Optional[seqio.Vocabulary] = None,
                                vocab_path: Optional[str] = None) -> seqio.Task:
    """Registers a task over XOR-TyDi-format question files (one per split).

    Raises:
      UserError: no split given.
    """
    if not split_to_path:
        raise UserError(f"task {name}: no question file given")
    loaders = {split: functools.partial(query_sources.load_xor_questions, path)
               for split, path in split_to_path.items()}
    return _register(name, query_sources.question_file_source(loaders), vocabulary or vocab.get_vocabulary(vocab_path))


def register_xor_tydi_tasks(xor_dir: str | pathlib.Path, vocabulary: Optional[seqio.Vocabulary] = None,
                            vocab_path: Optional[str] = None, prefix: str = "") -> list[seqio.Task]:
    """Registers `{prefix}xor_retrieve` and `{prefix}xor_full` over the official files present in `xor_dir`.

    Raises:
      UserError: `xor_dir` holds none of the files.
    """
    xor_dir = pathlib.Path(xor_dir)
    tasks = []
    for task in ("xor_retrieve", "xor_full"):
        paths = {split: xor_dir / XOR_TYDI_FILES[(task, split)] for split in ("train", "validation")
                 if (xor_dir / XOR_TYDI_FILES[(task, split)]).is_file()}
        if paths:
            tasks.append(register_question_file_task(prefix + task, paths, vocabulary, vocab_path))
    if not tasks:
        raise UserError(f"{xor_dir}: none of the XOR-TyDi files {sorted(set(XOR_TYDI_FILES.values()))}")
    return tasks


def register_demo_question_tasks(demo_dir: str | pathlib.Path, vocabulary: Optional[seqio.Vocabulary] = None,
                                 vocab_path: Optional[str] = None) -> list[seqio.Task]:
    """Registers demo_xor_retrieve / demo_xor_full over a demo wiki folder's xor_tydi/ question sets."""
    return register_xor_tydi_tasks(pathlib.Path(demo_dir) / "xor_tydi", vocabulary, vocab_path, prefix="demo_")


def register_mkqa_tasks(mkqa_file: str | pathlib.Path, languages: Optional[Sequence[str]] = None,
                        vocabulary: Optional[seqio.Vocabulary] = None,
                        vocab_path: Optional[str] = None) -> seqio.Mixture:
    """Registers `mkqa_<lang>` per language (split "validation") over the original MKQA file, and mixture `mkqa`."""
    vocabulary = vocabulary or vocab.get_vocabulary(vocab_path)
    names = []
    for lang in languages or mkqa.MKQA_LANGUAGES:
        loader = functools.partial(query_sources.load_mkqa_questions, mkqa_file, lang)
        names.append(_register(f"mkqa_{lang}", query_sources.question_file_source({"validation": loader}),
                               vocabulary).name)
    seqio.MixtureRegistry.remove("mkqa")
    return seqio.MixtureRegistry.add("mkqa", names, default_rate=1.0)


def register_nq_open_task(split_to_csv: Mapping[str, str | pathlib.Path],
                          vocabulary: Optional[seqio.Vocabulary] = None,
                          vocab_path: Optional[str] = None, name: str = "nq_open") -> seqio.Task:
    """Registers NQ-open over DPR's CSV files (split -> path)."""
    loaders = {split: functools.partial(query_sources.load_nq_csv, path, split) for split, path in split_to_csv.items()}
    return _register(name, query_sources.question_file_source(loaders), vocabulary or vocab.get_vocabulary(vocab_path))


def register_nq_open_tfds_task(vocabulary: Optional[seqio.Vocabulary] = None, vocab_path: Optional[str] = None,
                               tfds_name: str = "natural_questions_open:1.0.0",
                               tfds_data_dir: Optional[str] = None, name: str = "nq_open_tfds") -> seqio.Task:
    """Registers NQ-open read through TFDS."""
    return _register(name, query_sources.tfds_nq_open_source(tfds_name, tfds_data_dir),
                     vocabulary or vocab.get_vocabulary(vocab_path),
                     extra_preprocessors=[query_sources.tfds_nq_open_to_questions])


def register_from_environment(environ: Optional[Mapping[str, str]] = None) -> list[str]:
    """Registers the tasks whose files the environment names (see the module docstring); returns their names.

    The vocabulary is $CLASS_JAX_VOCAB_PATH or mT5's, read only when a task is.
    """
    environ = os.environ if environ is None else environ
    default = _lazy_default_vocabulary()
    names = [register_nq_open_tfds_task(vocabulary=default).name]
    if environ.get("CLASS_JAX_XOR_TYDI_DIR"):
        names += [t.name for t in register_xor_tydi_tasks(environ["CLASS_JAX_XOR_TYDI_DIR"], vocabulary=default)]
    if environ.get("CLASS_JAX_MKQA_FILE"):
        names.append(register_mkqa_tasks(environ["CLASS_JAX_MKQA_FILE"], vocabulary=default).name)
    if environ.get("CLASS_JAX_NQ_OPEN_DIR"):
        folder = pathlib.Path(environ["CLASS_JAX_NQ_OPEN_DIR"])
        names.append(register_nq_open_task({split: folder / file for split, file in NQ_CSV_FILES.items()},
                                           vocabulary=default).name)
    if environ.get("CLASS_JAX_DEMO_DIR"):
        names += [t.name for t in register_demo_question_tasks(environ["CLASS_JAX_DEMO_DIR"], vocabulary=default)]
    return names


def _lazy_default_vocabulary() -> seqio.Vocabulary:
    """The default vocabulary without checking that a local file exists (it is read only when the task is)."""
    return seqio.SentencePieceVocabulary(vocab.vocabulary_path())
