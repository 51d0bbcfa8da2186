"""Scoring one system of the demo report on the held-out dev questions.

Retrieval (cross-lingual): the XOR-Retrieve-style dev questions (target-language question, English answer span)
against the English passages only — the official R@2kt / R@5kt, plus R@n over the top n passages with the same
answer test, because the demo's English wiki is small enough for 2,000 tokens (about 20 passages) to cover a
sizeable part of it.

Answers: the XOR-Full-style dev questions (answers in the question's language) with each model's own top-k
passages from the multilingual index, decoded by its reader through `demo/eval_xor_full.gin` (seqio.Evaluator
and the MKQA/CORA F1 / EM scorer, per language).

A model system goes through the same code as `class-jax index`, `retrieve`, `build-fid` and `eval`.
"""

import dataclasses
import functools
import pathlib
from typing import Any, Sequence

import numpy as np

from class_jax.corpus import corpus_io
from class_jax.mining.teacher import BM25Teacher
from class_jax.evaluation import files, metrics, text, xor_retrieve
from class_jax.evaluation.records import GoldQuestion
from class_jax.tasks import text_inputs
from class_jax.fid import builders
from class_jax.tasks import query_sources
from class_jax.runtime import gin_utils

RETRIEVAL_QUESTIONS = "xor_dev_retrieve_eng_span_v1_1.jsonl"
ANSWER_QUESTIONS = "xor_dev_full_v1_1.jsonl"


@dataclasses.dataclass(frozen=True)
class DemoPaths:
    """Where the demo's shared inputs are."""

    wiki: pathlib.Path
    corpus: pathlib.Path
    vocab: pathlib.Path
    vocab_size: int

    @property
    def questions(self) -> pathlib.Path:
        """The XOR-TyDi-format question files of the demo wiki."""
        return self.wiki / "xor_tydi"

    def gin_bindings(self) -> list[str]:
        """What every demo gin file needs (gin/demo/common.gin)."""
        return [f"VOCAB_PATH = '{self.vocab}'", f"NUM_EMBEDDINGS = {self.vocab_size}"]


def demo_feature_lengths(gin_files: Sequence[str], bindings: Sequence[str]) -> dict[str, int]:
    """k and the query / passage lengths a training run reads its examples with.

    Read from the run's train dataset as gin configures it (`train/data.DatasetConfig.task_feature_lengths`, what
    `train_script.train` is given), so a binding that changes the trained lengths changes these too; the dataset
    itself (its FiD task registration) is not built.

    Args:
      gin_files: the run's gin files (e.g. demo/clr_pt.gin).
      bindings: its bindings.

    Returns:
      {"NUM_PASSAGES": k, "QUERY_LENGTH": Lq, "PASSAGE_LENGTH": Lp}.

    Raises:
      UserError: the configuration is invalid or binds no train feature lengths.
    """
    with gin_utils.scoped_config(gin_files, bindings):
        lengths = gin_utils.configured_argument("train/data.DatasetConfig", "task_feature_lengths")
    num_passages, passage_length = lengths["passage_tokens"]
    return {"NUM_PASSAGES": int(num_passages), "QUERY_LENGTH": int(lengths["query_tokens"]),
            "PASSAGE_LENGTH": int(passage_length)}


def _percent(hits: Sequence[bool]) -> float:
    return round(100.0 * float(np.mean(hits)), 2) if hits else float("nan")


def retrieval_report(questions: Sequence[GoldQuestion], ranked_texts: Sequence[Sequence[str]],
                     recall_at: Sequence[int]) -> dict[str, Any]:
    """Cross-lingual recall of ranked English passages, overall (macro over languages) and per language.

    Args:
      questions: the dev questions (English answer spans).
      ranked_texts: each question's retrieved passage texts, best first.
      recall_at: passage counts n for R@n (the official answer test on the tokens of the top n passages).

    Returns:
      {"R@2kt", "R@5kt", "R@<n>"..., "per_language": {lang: the same}}, in percent.
    """
    # The demo's few thousand passages recur in every question's ranking: tokenise each once.
    tokenize = functools.lru_cache(maxsize=None)(lambda passage: tuple(text.official_word_tokenize(passage)))
    targets = [{"lang": q.lang, "answers": list(q.answers)} for q in questions]
    official = metrics.xor_retrieve_recall_tokenized(targets, [list(texts) for texts in ranked_texts], tokenize)
    languages = sorted({q.lang for q in questions})
    report: dict[str, Any] = {name: round(official[name], 2) for name in ("R@2kt", "R@5kt")}
    per_language = {lang: {name: round(official[f"{name}_{lang}"], 2) for name in ("R@2kt", "R@5kt")}
                    for lang in languages}
    for n in recall_at:
        hits = [xor_retrieve.official_hit(xor_retrieve.span_answers(q.answers),
                                          " ".join(token for passage in texts[:n] for token in tokenize(passage)))
                for q, texts in zip(questions, ranked_texts)]
        for lang in languages:
            per_language[lang][f"R@{n}"] = _percent([h for h, q in zip(hits, questions) if q.lang == lang])
        report[f"R@{n}"] = round(float(np.mean([per_language[lang][f"R@{n}"] for lang in languages])), 2)
    for lang in languages:
        per_language[lang]["questions"] = sum(q.lang == lang for q in questions)
    report["per_language"] = per_language
    return report


def _answer_readable(example: dict[str, Any], vocabulary: Any, passage_length: int) -> bool:
    """Whether a gold answer is in what the reader read of its passages: each `title: … context: …` cut to
    `passage_length` tokens, decoded (the inference logs summarise the token arrays, so they are rebuilt).

    The demo's passages are whole short articles (about 150 tokens) and the reader reads the first 64, so a fact
    late in an article is in the passage's text but was never shown to the model.
    """
    count = int(example["num_passages"])
    views = [vocabulary.decode(text_inputs.passage_ids(vocabulary, title, text, passage_length))
             for title, text in zip(example["passage_titles"][:count], example["passage_texts"][:count])]
    # Answers go through the same SentencePiece round trip (normalisation) as the passages.
    answers = [vocabulary.decode(vocabulary.encode(answer)) for answer in example["answers"]]
    return any(answer and answer in view for answer in answers for view in views)


def _f1_where(inferences: Sequence[dict[str, Any]], readable: Sequence[bool], shown: bool) -> dict[str, Any]:
    """F1 (macro over languages, the eval's MKQA/CORA scorer) of the questions whose answer is (not) readable."""
    chosen = [record for record, is_readable in zip(inferences, readable) if is_readable == shown]
    if not chosen:
        return {"f1": None, "questions": 0}
    targets = [{"id": r["input"]["id"], "lang": r["input"]["lang"], "answers": r["input"]["answers"]}
               for r in chosen]
    scores = metrics.mkqa_cora_f1(targets, [r["prediction"] for r in chosen])
    return {"f1": round(scores["f1"], 2), "questions": len(chosen)}


def answer_report(results: dict[str, float], answers_dir: pathlib.Path, languages: Sequence[str],
                  vocabulary: Any, passage_length: int) -> dict[str, Any]:
    """F1 / EM overall and per language, with what the reader was given to copy from.

    Args:
      results: the eval task's metrics.
      answers_dir: the eval's output folder (seqio's `eval_xor_full-<step>.jsonl` inferences with their inputs).
      languages: the evaluated languages.
      vocabulary: the demo vocabulary.
      passage_length: tokens the reader reads of each passage.

    Returns:
      {"f1", "em", "answer_in_passages", "per_language", "copying"}: answer_in_passages is the percentage of
      questions with a gold answer in what the reader read of its k passages (the ceiling of copying); copying
      splits F1 between those questions and the rest: a reader that copies scores far higher on the first
      group, one that guesses from the question alone scores alike on both.

    Raises:
      FileNotFoundError: the eval wrote no inferences.
    """
    inference_files = [path for path in sorted(answers_dir.glob("eval_xor_full-*.jsonl"))
                       if not path.name.endswith("-metrics.jsonl")]
    if not inference_files:
        raise FileNotFoundError(f"{answers_dir}: no eval_xor_full-<step>.jsonl inferences")
    inferences = [record for _, record in files.iter_jsonl(inference_files[-1])]
    readable = [_answer_readable(record["input"], vocabulary, passage_length) for record in inferences]
    given: dict[str, list[bool]] = {}
    for record, is_readable in zip(inferences, readable):
        given.setdefault(record["input"]["lang"], []).append(is_readable)
    return {"f1": round(results["f1"], 2), "em": round(results["em"], 2),
            "answer_in_passages": round(float(np.mean([_percent(given[lang]) for lang in given])), 2),
            "copying": {"answer_readable": _f1_where(inferences, readable, True),
                        "answer_not_readable": _f1_where(inferences, readable, False)},
            "per_language": {lang: {"f1": round(results[f"f1_{lang}"], 2), "em": round(results[f"em_{lang}"], 2),
                                    "answer_in_passages": _percent(given.get(lang, [])),
                                    "questions": len(given.get(lang, []))}
                             for lang in languages if f"f1_{lang}" in results}}


def _ranked_texts(retriever: Any, questions: Sequence[GoldQuestion], passages: dict, depth: int) -> list[list[str]]:
    ranked = retriever.top_k([q.question for q in questions], depth)
    return [[passages[passage_id].text for passage_id in ids] for ids, _ in ranked]


def bm25_system(paths: DemoPaths, recall_at: Sequence[int], depth: int) -> dict[str, Any]:
    """BM25 over the English passages with the native-language question (retrieval only)."""
    english = builders.load_passages(paths.corpus, ["en"])
    questions = query_sources.load_xor_questions(paths.questions / RETRIEVAL_QUESTIONS)
    ranked = _ranked_texts(BM25Teacher.build(english.values()), questions, english, depth)
    return {"retrieval": retrieval_report(questions, ranked, recall_at), "answers": None}


def build_index(params_dir: pathlib.Path, paths: DemoPaths, languages: Sequence[str] | None,
                out: pathlib.Path, passage_length: int) -> pathlib.Path:
    """`class-jax index` for a params directory (resumes a killed build; a complete index is kept)."""
    from class_jax.retrieval import index_builder  # pylint: disable=import-outside-toplevel
    from class_jax.retrieval.corpus_source import CorpusSource  # pylint: disable=import-outside-toplevel
    from class_jax.runtime.partitioning import Partitioner  # pylint: disable=import-outside-toplevel

    index_builder.build_index(str(params_dir), str(paths.vocab), CorpusSource.plan(paths.corpus, languages), str(out),
                          Partitioner(), batch_size=64, dtype="float32", passage_max_length=passage_length,
                          progress=False)
    return out


def index_retriever(params_dir: pathlib.Path, index_dir: pathlib.Path, paths: DemoPaths, query_length: int):
    """The model + its index as a retriever (the `class-jax retrieve` / `build-fid --retriever index` path)."""
    from class_jax.retrieval import retrieve  # pylint: disable=import-outside-toplevel
    from class_jax.runtime.partitioning import Partitioner  # pylint: disable=import-outside-toplevel
    return retrieve.IndexRetriever(str(index_dir), str(params_dir), str(paths.vocab), Partitioner(),
                                   batch_size=64, query_length=query_length)


def write_question_fid(retriever: Any, question_file: pathlib.Path, passages: dict, out: pathlib.Path,
                       num_passages: int, with_target: bool) -> int:
    """`class-jax build-fid --kind finetune`: the questions with the retriever's top k; returns the count."""
    manifest = builders.write_question_fid_files(
        query_sources.load_xor_questions(question_file), retriever, passages, str(out), num_passages=num_passages,
        with_target=with_target, overwrite=True)
    return manifest["num_examples"]


def evaluate_answers(params_dir: pathlib.Path, fid_dir: pathlib.Path, out: pathlib.Path, paths: DemoPaths,
                     languages: Sequence[str], passage_length: int) -> dict[str, Any]:
    """`class-jax eval` with demo/eval_xor_full.gin: greedy answers, F1 / EM per language."""
    import class_jax.trainer.evaluate as eval_script  # pylint: disable=import-outside-toplevel
    with gin_utils.scoped_config(["demo/eval_xor_full.gin"], paths.gin_bindings() + [
            f"CHECKPOINT_PATH = '{params_dir}'", f"EVAL_OUTPUT_DIR = '{out}'", f"EVAL_FID_DIRS = '{fid_dir}'",
            "eval_script.evaluate.tensorboard = False"]):
        results = gin_utils.run_configured(eval_script.evaluate)
    from class_jax.tasks import vocab  # pylint: disable=import-outside-toplevel
    return answer_report(results["eval_xor_full"], out, languages, vocab.get_vocabulary(str(paths.vocab)),
                         passage_length)


def model_system(params_dir: pathlib.Path, paths: DemoPaths, out: pathlib.Path, languages: Sequence[str],
                 recall_at: Sequence[int], depth: int, lengths: dict[str, int]) -> dict[str, Any]:
    """Indexes the corpus with a model, then scores its cross-lingual retrieval and its answers.

    Args:
      params_dir: the model (a params directory).
      paths: the demo's inputs.
      out: this system's evaluation folder (indexes, FiD files, decoded answers).
      languages: the evaluated question languages.
      recall_at: R@n cut-offs.
      depth: passages retrieved per retrieval question.
      lengths: `demo_feature_lengths(...)` of the training runs.

    Returns:
      {"retrieval": retrieval_report(...), "answers": answer_report(...), "indexes": {...}}.
    """
    english_index = build_index(params_dir, paths, ["en"], out / "index_en", lengths["PASSAGE_LENGTH"])
    full_index = build_index(params_dir, paths, None, out / "index_all", lengths["PASSAGE_LENGTH"])

    english = builders.load_passages(paths.corpus, ["en"])
    questions = query_sources.load_xor_questions(paths.questions / RETRIEVAL_QUESTIONS)
    retriever = index_retriever(params_dir, english_index, paths, lengths["QUERY_LENGTH"])
    retrieval = retrieval_report(questions, _ranked_texts(retriever, questions, english, depth), recall_at)

    everything = builders.load_passages(paths.corpus, corpus_io.corpus_languages(paths.corpus))
    retriever = index_retriever(params_dir, full_index, paths, lengths["QUERY_LENGTH"])
    write_question_fid(retriever, paths.questions / ANSWER_QUESTIONS, everything, out / "dev_full_fid",
                       lengths["NUM_PASSAGES"], with_target=False)
    answers = evaluate_answers(params_dir, out / "dev_full_fid", out / "answers", paths, languages,
                               lengths["PASSAGE_LENGTH"])
    return {"retrieval": retrieval, "answers": answers,
            "indexes": {"en": str(english_index), "all": str(full_index)}}
