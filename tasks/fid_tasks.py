"""FiD SeqIO tasks: a query with its k passages (a FiD example directory, tasks/fid_files.py) -> CLASS features.

FiD files are produced at run time (by the stage-1 teacher, by each retrieval refresh round, by an evaluation
retrieval run), so these tasks are registered by functions given the directories, not at import:

    register_fid_task("finetune_xor_full", "/runs/xor/fid/round-0003", kind="finetune")

and the stage gin files name their data through macros whose value is such a call, evaluated when the trainer
builds its dataset:

    MIXTURE_OR_TASK_NAME = @fid_tasks.fid_task()
    fid_tasks.fid_task:
      name = 'finetune_xor_full'
      fid_dirs = %TRAIN_FID_DIRS        # set by the user: --gin.TRAIN_FID_DIRS="'/data/xor_full_fid'"
      kind = 'finetune'
      vocab_path = %VOCAB_PATH

A directory argument is a path, a glob of directories, a list of them, or (for per-language mixtures) a template
with "{lang}". Kinds are the stages of class_jax/runtime/stages.py (the old "anchor_qa" and "qa" still read, with a
FutureWarning):

    clr_pt             stage 1: target-language cloze + English cloze + teacher passages and scores; with a
                       teacher vocabulary (`teacher_vocab_path`), also the English cloze, the passages and the
                       answer in the teacher's tokenisation, and the teacher scores become optional
    mlqa_pt            stage 2 (MLQA-PT): generated question + retrieved passages; the query's own source passage
                       is blanked
    finetune           fine-tuning (NQ, XOR-Full, XOR-Retrieve): question + passages + answer
    xor_full_eval      XOR-Full answers: F1 / EM / BLEU (metrics.xor_full_f1_em_bleu)
    mkqa_eval          MKQA answers: F1 as CLASS / CORA compute it (metrics.mkqa_cora_f1)
    xor_retrieve_eval  XOR-Retrieve R@2kt / R@5kt over the attached passages in their file (retrieval) order
                       (metrics.xor_retrieve_recall); it scores the retrieval that wrote the file, the decoded
                       answer is not used

Training kinds train on the record's `target`; eval kinds decode towards answers[0] and score against all
answers. Every task offers the splits "train" and "validation" over the same files unless a mapping
split -> directories is given.

Stage 1 with a neural teacher (the release's ReAtt, a T5-large with T5's English 32k SentencePiece model, e.g.
gs://t5-data/vocabs/cc_en.32000/sentencepiece.model) names the teacher's vocabulary next to the student's:

    fid_tasks.fid_mixture:
      kind = 'clr_pt'
      vocab_path = %VOCAB_PATH
      teacher_vocab_path = %TEACHER_VOCAB_PATH

The task then also emits `teacher_query_tokens`, `teacher_passage_tokens` and `teacher_targets` (see
tasks/preprocessors.py), so the training step can run the teacher on the fly, and the records need not carry
`teacher_scores` (they are still emitted, 0 where the files have none, so batches keep one layout). The lengths
of those features are task feature lengths like the others (class_jax/models/feature_converter.py).
"""

import dataclasses
import functools
from typing import Any, Callable, Mapping, Optional, Sequence

import seqio
import tensorflow as tf

from class_jax.runtime.errors import UserError
from class_jax.runtime import stages
from class_jax.evaluation import metrics
from class_jax.tasks import fid_files
from class_jax.tasks import preprocessors
from class_jax.tasks import vocab

# The 15 target languages of the released CLR-PT data.
CLR_PT_LANGUAGES = ("ar", "bn", "de", "es", "fi", "fr", "it", "ja", "ko", "ru", "te", "ta", "ml", "kn", "zh")
DEFAULT_SPLITS = ("train", "validation")


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def answer_postprocessor(output: Any, example: Optional[Mapping[str, Any]] = None,
                         is_target: bool = False) -> Any:
    """Targets -> {"lang", "answers"} from the example (what the metric fns read); predictions stay strings."""
    if is_target:
        return {"lang": _text(example["lang"]), "answers": [_text(a) for a in example["answers"]]}
    return output


def retrieval_postprocessor(output: Any, example: Optional[Mapping[str, Any]] = None,
                            is_target: bool = False) -> Any:
    """Targets as `answer_postprocessor`; a prediction becomes the example's attached passage texts, in rank order."""
    del output
    if is_target:
        return answer_postprocessor(None, example, True)
    return [_text(text) for text in example["passage_texts"][:int(example["num_passages"])]]


@dataclasses.dataclass(frozen=True)
class KindSpec:
    """How the FiD task of one stage is built.

    Attributes:
      options: keyword options of preprocessors.fid_inputs.
      requires: the FiD file fields every record must carry.
      metric_fns: the task's metric fns (eval kinds).
      postprocess_fn: the task's postprocessor (eval kinds).
      stage1: the task has stage 1's extra features (english_query_tokens, teacher_scores); only such a kind
        takes a teacher vocabulary (teacher_query_tokens, teacher_passage_tokens, teacher_targets), which makes
        "teacher_scores" optional in `requires` (a neural teacher scores on the fly).
    """

    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    requires: tuple[str, ...] = ()
    metric_fns: tuple[Callable[..., Any], ...] = ()
    postprocess_fn: Optional[Callable[..., Any]] = None
    stage1: bool = False


_FIRST_ANSWER = {"answer_source": "first_answer"}
KIND_SPECS: Mapping[stages.Stage, KindSpec] = {
    stages.Stage.CLR_PT: KindSpec(options={"with_english_query": True, "with_teacher_scores": True},
                                  requires=("english_question", "teacher_scores", "target"), stage1=True),
    stages.Stage.MLQA_PT: KindSpec(options={"drop_source_passage": True}, requires=("target",)),
    stages.Stage.FINETUNE: KindSpec(requires=("target",)),
    stages.Stage.XOR_FULL_EVAL: KindSpec(options=_FIRST_ANSWER, metric_fns=(metrics.xor_full_f1_em_bleu,),
                                         postprocess_fn=answer_postprocessor),
    stages.Stage.MKQA_EVAL: KindSpec(options=_FIRST_ANSWER, metric_fns=(metrics.mkqa_cora_f1,),
                                     postprocess_fn=answer_postprocessor),
    stages.Stage.XOR_RETRIEVE_EVAL: KindSpec(options=_FIRST_ANSWER, metric_fns=(metrics.xor_retrieve_recall,),
                                             postprocess_fn=retrieval_postprocessor),
}

KINDS = stages.names(KIND_SPECS)


def kind_spec(kind: "str | stages.Stage") -> KindSpec:
    """The spec of a FiD task kind (a stage name; the deprecated "anchor_qa" / "qa" warn).

    Raises:
      ValueError: an unknown kind (the message lists the valid ones).
    """
    return KIND_SPECS[stages.parse(kind, allowed=KIND_SPECS, what="FiD task kind")]


# Record fields a stage-1 task stops requiring when it has a teacher vocabulary (the teacher scores on the fly).
NEURAL_TEACHER_OPTIONAL_FIELDS = ("teacher_scores",)


def fid_output_features(vocabulary: seqio.Vocabulary, stage1: bool = False,
                        teacher_vocabulary: Optional[seqio.Vocabulary] = None) -> dict[str, seqio.Feature]:
    """The task features (see class_jax/models/feature_converter.py); only the targets get an EOS from SeqIO.

    Args:
      vocabulary: the student's vocabulary.
      stage1: add stage 1's english_query_tokens and teacher_scores.
      teacher_vocabulary: add teacher_query_tokens, teacher_passage_tokens and teacher_targets in this
        vocabulary (stage 1 with a neural teacher).
    """
    features = {
        "query_tokens": seqio.Feature(vocabulary, add_eos=False),
        "passage_tokens": seqio.Feature(vocabulary, add_eos=False, rank=2),
        "targets": seqio.Feature(vocabulary, add_eos=True),
    }
    if stage1:
        features["english_query_tokens"] = seqio.Feature(vocabulary, add_eos=False)
        features["teacher_scores"] = seqio.Feature(seqio.PassThroughVocabulary(1), add_eos=False, dtype=tf.float32)
    if teacher_vocabulary is not None:
        features["teacher_query_tokens"] = seqio.Feature(teacher_vocabulary, add_eos=False)
        features["teacher_passage_tokens"] = seqio.Feature(teacher_vocabulary, add_eos=False, rank=2)
        features["teacher_targets"] = seqio.Feature(teacher_vocabulary, add_eos=True)
    return features


def _teacher_vocabulary(what: str, kind: stages.Stage, spec: KindSpec, teacher_vocab_path: Optional[str],
                        teacher_vocabulary: Optional[seqio.Vocabulary]) -> Optional[seqio.Vocabulary]:
    """The teacher's vocabulary of `what` (e.g. "FiD task 'clr_pt_ja'"), or None without one.

    Raises:
      UserError: a teacher vocabulary for a kind other than stage 1's, or a local path that does not exist.
    """
    if teacher_vocabulary is None and not teacher_vocab_path:
        return None
    if not spec.stage1:
        raise UserError(f"{what}: a teacher vocabulary (teacher_vocab_path) applies to kind "
                        f"{stages.Stage.CLR_PT.value!r} only, not {kind.value!r}")
    return teacher_vocabulary or vocab.get_vocabulary(teacher_vocab_path)


def register_fid_task(name: str, fid_dirs: fid_files.FiDDirs | Mapping[str, fid_files.FiDDirs], kind: str, *,
                      vocab_path: Optional[str] = None, vocabulary: Optional[seqio.Vocabulary] = None,
                      splits: Sequence[str] = DEFAULT_SPLITS, normalize_queries: bool = False,
                      teacher_vocab_path: Optional[str] = None,
                      teacher_vocabulary: Optional[seqio.Vocabulary] = None) -> seqio.Task:
    """Registers (replacing a same-named one) a FiD task over FiD example directories.

    Args:
      name: task name (underscores, e.g. "finetune_xor_full").
      fid_dirs: directories for every split in `splits`, or a mapping split -> directories.
      kind: one of KINDS, a stage name (see the module docstring).
      vocab_path: SentencePiece model (see tasks/vocab.py); ignored when `vocabulary` is given.
      vocabulary: a vocabulary object (tests).
      splits: the splits offered when `fid_dirs` is not a mapping.
      normalize_queries: apply the release's query normalisation (`text_inputs.normalize_query`; gin macro
        `NORMALIZE_QUERIES`).
      teacher_vocab_path: stage 1 (kind "clr_pt") only: the SentencePiece model of a neural teacher (ReAtt: T5's
        English vocabulary). The task then also emits the English query, the passages and the answer tokenised
        with it (teacher_query_tokens, teacher_passage_tokens, teacher_targets), and the records need not carry
        teacher_scores. None (the default): no teacher features, the BM25 teacher's scores are required.
      teacher_vocabulary: a teacher vocabulary object (tests); takes precedence over `teacher_vocab_path`.

    Returns:
      The task.

    Raises:
      ValueError: an unknown kind.
      UserError: a teacher vocabulary for a kind other than "clr_pt", or a local teacher model that does not
        exist.
    """
    stage = stages.parse(kind, allowed=KIND_SPECS, what="FiD task kind")
    spec = KIND_SPECS[stage]
    teacher = _teacher_vocabulary(f"FiD task {name!r}", stage, spec, teacher_vocab_path, teacher_vocabulary)
    vocabulary = vocabulary or vocab.get_vocabulary(vocab_path)
    split_to_dirs = dict(fid_dirs) if isinstance(fid_dirs, Mapping) else {split: fid_dirs for split in splits}
    requires = spec.requires
    if teacher is not None:
        requires = tuple(field for field in requires if field not in NEURAL_TEACHER_OPTIONAL_FIELDS)
    source = fid_files.FiDFileDataSource(split_to_dirs, required_fields=requires)
    options = dict(spec.options)
    if normalize_queries:
        options["normalize_queries"] = True
    if teacher is not None:
        options["with_teacher_inputs"] = True
    seqio.TaskRegistry.remove(name)
    return seqio.TaskRegistry.add(
        name,
        source=source,
        preprocessors=[functools.partial(preprocessors.fid_inputs, **options),
                       seqio.preprocessors.append_eos_after_trim],
        output_features=fid_output_features(vocabulary, stage1=spec.stage1, teacher_vocabulary=teacher),
        postprocess_fn=spec.postprocess_fn,
        metric_fns=list(spec.metric_fns),
    )


def fid_task(name: str, fid_dirs: fid_files.FiDDirs | Mapping[str, fid_files.FiDDirs], kind: str,
             vocab_path: Optional[str] = None, normalize_queries: bool = False,
             teacher_vocab_path: Optional[str] = None) -> str:
    """`register_fid_task` for gin: registers the task and returns its name (bind MIXTURE_OR_TASK_NAME to it)."""
    register_fid_task(name, fid_dirs, kind, vocab_path=vocab_path, normalize_queries=normalize_queries,
                      teacher_vocab_path=teacher_vocab_path)
    return name


def _per_language_dirs(template: fid_files.FiDDirs, lang: str) -> fid_files.FiDDirs:
    if isinstance(template, str):
        return template.format(lang=lang)
    return [item.format(lang=lang) for item in template]


def register_language_mixture(prefix: str, dirs_template: fid_files.FiDDirs, languages: Sequence[str], kind: str, *,
                              vocab_path: Optional[str] = None, vocabulary: Optional[seqio.Vocabulary] = None,
                              splits: Sequence[str] = DEFAULT_SPLITS, normalize_queries: bool = False,
                              teacher_vocab_path: Optional[str] = None,
                              teacher_vocabulary: Optional[seqio.Vocabulary] = None) -> seqio.Mixture:
    """Registers one FiD task per language ("{prefix}_{lang}") and their mixture "{prefix}".

    Languages are mixed in proportion to their examples (seqio.mixing_rate_num_examples), as training on the
    concatenated data would.

    Args:
      prefix: mixture name and task name prefix (e.g. "clr_pt").
      dirs_template: directories containing "{lang}" (e.g. "/data/clr_pt_fid/{lang}").
      languages: the languages.
      kind: the task kind (see KINDS).
      vocab_path / vocabulary / splits / normalize_queries / teacher_vocab_path / teacher_vocabulary: as in
        `register_fid_task`.

    Returns:
      The mixture.

    Raises:
      UserError: the template has no "{lang}", no language is given, or a teacher vocabulary for a kind other
        than "clr_pt".
      ValueError: an unknown kind.
    """
    kind = stages.parse(kind, allowed=KIND_SPECS, what="FiD task kind")  # warns once, not once per language
    # Loaded once for every language's task (and refused before any is registered).
    teacher_vocabulary = _teacher_vocabulary(f"FiD mixture {prefix!r}", kind, KIND_SPECS[kind], teacher_vocab_path,
                                             teacher_vocabulary)
    items = [dirs_template] if isinstance(dirs_template, str) else list(dirs_template)
    if not all("{lang}" in item for item in items):
        raise UserError(f"FiD directories {dirs_template!r} for the per-language mixture {prefix!r} must contain "
                        f"'{{lang}}'")
    if not languages:
        raise UserError(f"mixture {prefix!r}: no languages given")
    names = []
    for lang in languages:
        task = register_fid_task(f"{prefix}_{lang}", _per_language_dirs(dirs_template, lang), kind,
                                 vocab_path=vocab_path, vocabulary=vocabulary, splits=splits,
                                 normalize_queries=normalize_queries, teacher_vocabulary=teacher_vocabulary)
        names.append(task.name)
    seqio.MixtureRegistry.remove(prefix)
    return seqio.MixtureRegistry.add(prefix, names, default_rate=seqio.mixing_rate_num_examples)


def fid_mixture(prefix: str, fid_dirs: fid_files.FiDDirs, languages: Sequence[str], kind: str,
                vocab_path: Optional[str] = None, normalize_queries: bool = False,
                teacher_vocab_path: Optional[str] = None) -> str:
    """`register_language_mixture` for gin: registers the tasks and mixture, returns the mixture name."""
    register_language_mixture(prefix, fid_dirs, languages, kind, vocab_path=vocab_path,
                              normalize_queries=normalize_queries, teacher_vocab_path=teacher_vocab_path)
    return prefix
