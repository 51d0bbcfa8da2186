"""Demo wiki -> ingest -> FiD files (BM25 passages) -> `train` through the demo stage gin files -> `evaluate`.

The default test fine-tunes the tiny model on the demo's XOR-Retrieve questions and evaluates R@kt; the slow one
runs every demo stage in order (mining, CLR-PT, MLQA-PT, fine-tuning, XOR-Full and MKQA-style evaluation).
"""

import json
import pathlib

import pytest

from class_jax.corpus import corpus_io
from class_jax.mining.teacher import BM25Teacher
from class_jax.evaluation import metrics
import class_jax.tasks  # noqa: F401  (registers CLASSModel's feature converter)
from class_jax.fid import builders
from class_jax.tasks import fid_files
from class_jax.tasks import query_sources
from class_jax.runtime import gin_utils
import class_jax.trainer.evaluate as eval_script
import class_jax.trainer.train as train_script
from conftest import DEMO_VOCAB_SIZE

K = 4  # gin/demo/common.gin NUM_PASSAGES


def _demo_bindings(demo) -> list[str]:
    return [f"VOCAB_PATH = '{demo['vocab']}'", f"NUM_EMBEDDINGS = {DEMO_VOCAB_SIZE}"]


def _train(gin_file: str, bindings: list[str]):
    gin_utils.parse_gin([gin_file], bindings + ["train_script.train.tensorboard = False"])
    try:
        return gin_utils.run_configured(train_script.train)
    finally:
        gin_utils.gin.clear_config()


def _evaluate(gin_file: str, bindings: list[str]) -> dict:
    gin_utils.parse_gin([gin_file], bindings)
    try:
        return gin_utils.run_configured(eval_script.evaluate)
    finally:
        gin_utils.gin.clear_config()


def _write_question_fid(path: pathlib.Path, question_file: pathlib.Path, retriever, passages, with_target: bool):
    questions = query_sources.load_xor_questions(question_file)
    builders.write_question_fid_files(questions, retriever, passages, str(path), num_passages=K,
                                          with_target=with_target, num_shards=2)
    return questions


@pytest.fixture(scope="module")
def english_bm25(demo):
    passages = builders.load_passages(demo["corpus"], corpus_io.corpus_languages(demo["corpus"]))
    return BM25Teacher.build(p for p in passages.values() if p.lang == "en"), passages


def test_finetune_and_evaluate_xor_retrieve_through_demo_gin(demo, english_bm25, tmp_path):
    teacher, passages = english_bm25
    xor_dir = demo["wiki"] / "xor_tydi"
    _write_question_fid(tmp_path / "train_fid", xor_dir / "xor_train_retrieve_eng_span.jsonl", teacher, passages,
                        with_target=True)
    dev = _write_question_fid(tmp_path / "dev_fid", xor_dir / "xor_dev_retrieve_eng_span_v1_1.jsonl", teacher,
                              passages, with_target=False)

    result = _train("demo/finetune_xor_retrieve.gin", _demo_bindings(demo) + [
        f"MODEL_DIR = '{tmp_path / 'run'}'", f"TRAIN_FID_DIRS = '{tmp_path / 'train_fid'}'",
        "INITIAL_CHECKPOINT_PATH = None", "TRAIN_STEPS = 3", "LOG_PERIOD = 1"])
    assert result.step == 3 and not result.preempted
    assert {"loss", "loss/ce", "loss/kl_reader_retriever"} <= set(result.last_metrics)
    assert all(value == value for value in result.last_metrics.values())  # no NaN
    assert (tmp_path / "run" / "operative_config.gin").read_text().count("finetune_xor_retrieve") >= 1

    results = _evaluate("demo/eval_xor_retrieve.gin", _demo_bindings(demo) + [
        f"CHECKPOINT_PATH = '{tmp_path / 'run'}'", f"EVAL_OUTPUT_DIR = '{tmp_path / 'eval'}'",
        f"EVAL_FID_DIRS = '{tmp_path / 'dev_fid'}'"])
    # R@kt of the attached passages, computed here straight from the BM25 ranking, must be what the task reports.
    retrieved = teacher.top_k([q.question for q in dev], K)
    expected = metrics.xor_retrieve_recall([{"lang": q.lang, "answers": list(q.answers)} for q in dev],
                                           [[passages[i].text for i in ids] for ids, _ in retrieved])
    reported = results["eval_xor_retrieve"]
    for budget in ("R@2kt", "R@5kt"):
        assert reported[budget] == pytest.approx(expected[budget])
    written = [json.loads(line) for line in (tmp_path / "eval" / "metrics.jsonl").read_text().splitlines()]
    assert written[-1]["eval/eval_xor_retrieve/R@2kt"] == pytest.approx(expected["R@2kt"])
    assert (tmp_path / "eval" / "eval_xor_retrieve-000003.jsonl").is_file()


class PerLanguageBM25:
    """BM25 over the passages of the query's language (the demo's stand-in for the model's multilingual index)."""

    def __init__(self, passages, lang: str):
        self.teacher = BM25Teacher.build((p for p in passages.values() if p.lang == lang), lang=lang, stemmer=None)

    def top_k(self, queries, k):
        return self.teacher.top_k(queries, k)


@pytest.mark.slow
def test_every_demo_stage_in_order(demo, english_bm25, tmp_path):
    from class_jax.mining import pipeline  # pylint: disable=import-outside-toplevel
    teacher, passages = english_bm25
    languages = ["de", "ja"]
    mined = tmp_path / "mined"
    pipeline.run_mining(pipeline.MiningConfig(
        corpus=str(demo["corpus"]), out=str(mined), langs=tuple(languages),
        teacher=pipeline.TeacherSettings(k=K),
        audit_sample=0, progress=False))
    builders.write_clr_pt_fid_files(str(mined), passages, str(tmp_path / "clr_pt_fid" / "{lang}"), languages,
                                        num_passages=K)
    clr_pt = _train("demo/clr_pt.gin", _demo_bindings(demo) + [
        f"MODEL_DIR = '{tmp_path / 'clr_pt'}'", f"CLR_PT_FID_DIRS = '{tmp_path / 'clr_pt_fid' / '{lang}'}'",
        f"CLR_PT_LANGUAGES = {languages}", "TRAIN_STEPS = 2", "WARMUP_STEPS = 1"])
    assert {"loss/kl_teacher_en", "loss/kl_teacher_xx", "loss/kl_en_xx"} <= set(clr_pt.last_metrics)

    for lang in languages:
        builders.write_mlqa_pt_fid_files(str(mined), PerLanguageBM25(passages, lang), passages,
                                             str(tmp_path / "mlqa_pt_fid" / "{lang}"), [lang], num_passages=K)
    mlqa_pt = _train("demo/mlqa_pt.gin", _demo_bindings(demo) + [
        f"MODEL_DIR = '{tmp_path / 'mlqa_pt'}'", f"MLQA_PT_FID_DIRS = '{tmp_path / 'mlqa_pt_fid' / '{lang}'}'",
        f"MLQA_PT_LANGUAGES = {languages}", f"INITIAL_CHECKPOINT_PATH = '{tmp_path / 'clr_pt'}'", "TRAIN_STEPS = 2",
        f"REFRESH_CORPUS_DIR = '{demo['corpus']}'", "REFRESH_EVERY_STEPS = 1"])
    assert (tmp_path / "mlqa_pt" / "initial_checkpoint_report.json").is_file() and mlqa_pt.step == 2
    # The passage refresh re-retrieved with the model's own retriever and wrote FiD files the stage's task reads.
    rounds = sorted((tmp_path / "mlqa_pt" / "refresh").glob("**/" + fid_files.MANIFEST_NAME))
    assert rounds, "no refresh round was written"

    xor_dir = demo["wiki"] / "xor_tydi"
    _write_question_fid(tmp_path / "full_train", xor_dir / "xor_train_full.jsonl", teacher, passages, True)
    _write_question_fid(tmp_path / "full_dev", xor_dir / "xor_dev_full_v1_1.jsonl", teacher, passages, False)
    _train("demo/finetune_xor_full.gin", _demo_bindings(demo) + [
        f"MODEL_DIR = '{tmp_path / 'xor_full'}'", f"TRAIN_FID_DIRS = '{tmp_path / 'full_train'}'",
        f"INITIAL_CHECKPOINT_PATH = '{tmp_path / 'mlqa_pt'}'", "TRAIN_STEPS = 2"])
    for gin_file, task in (("demo/eval_xor_full.gin", "eval_xor_full"), ("demo/eval_mkqa.gin", "eval_mkqa")):
        results = _evaluate(gin_file, _demo_bindings(demo) + [
            f"CHECKPOINT_PATH = '{tmp_path / 'xor_full'}'", f"EVAL_OUTPUT_DIR = '{tmp_path / task}'",
            f"EVAL_FID_DIRS = '{tmp_path / 'full_dev'}'"])
        assert {"f1", "em", "bleu", "f1_de", "f1_ja"} <= set(results[task])
