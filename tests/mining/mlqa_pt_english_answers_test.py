"""Tests for MLQA-PT with English answers (`class-jax mine --mlqa_pt_answer_lang en`) on the demo wiki.

The XOR-Retrieve pipeline of the release trains stage 2 on target-language questions whose answer is the linked
entity's English title (`mss.ICL.query.en.anchor`). These tests mine the demo wiki of mining_pipeline_test.py in
both modes (MLQA-PT stage only, Beam in memory) and compare them.
"""

import argparse
import gzip
import json
import shutil

import pytest

import mining_pipeline_test as demo_mining
from class_jax import cli
from class_jax.commands import mine as mine_command
from class_jax.demo.world import wiki as demo_wiki
from class_jax.mining import dataset_io
from class_jax.mining import mlqa_pt
from class_jax.mining import pipeline
from class_jax.mining.rewrite import filters
from class_jax.mining.rewrite import rewriter as rewrite
from class_jax.corpus.types import Article, Link
from class_jax.runtime.errors import UserError
from class_jax.tasks import fid_files

LANGS = demo_mining.DEMO_LANGS
HISTORICAL_CLOZE_KEYS = {"qid", "lang", "cloze", "answer", "answer_title", "source_title", "source_page_id",
                         "source_passage_id"}


def _config(corpus, out, **overrides) -> pipeline.MiningConfig:
    return demo_mining._config(corpus, out, stages=("mlqa_pt",), **overrides)


@pytest.fixture(scope="module")
def mined(tmp_path_factory):
    """The small demo wiki, ingested, with MLQA-PT mined once with anchor answers and once with English answers."""
    root = tmp_path_factory.mktemp("mlqa_pt_english")
    demo_wiki.make_demo_wiki(root / "wiki", size="small")
    demo_wiki.ingest_demo_wiki(root / "wiki", root / "corpus")
    target = pipeline.run_mining(_config(root / "corpus", root / "target"))
    english = pipeline.run_mining(_config(root / "corpus", root / "english", mlqa_pt_answer_lang="en"))
    return root, target, english


def _english_titles(corpus) -> dict[tuple[str, str], str]:
    """(lang, title) -> the English title of its entity, from the corpus's entity table."""
    with gzip.open(corpus / "entities.jsonl.gz", "rt", encoding="utf-8") as f:
        entities = [json.loads(line) for line in f if line.strip()]
    return {(lang, title): entity["titles"]["en"] for entity in entities if "en" in entity["titles"]
            for lang, title in entity["titles"].items() if lang != "en"}


def _records(out, dataset: str, lang: str) -> dict[str, dict]:
    return {record["qid"]: record for record in dataset_io.read_dataset(str(out), dataset, lang)}


def test_english_answers_are_the_english_titles_of_the_linked_entities(mined):
    root, _, _ = mined
    english_titles = _english_titles(root / "corpus")
    disambiguated = 0
    for lang in LANGS:
        target = _records(root / "target", "mlqa_pt_clozes", lang)
        english = _records(root / "english", "mlqa_pt_clozes", lang)
        assert english, lang
        for qid, record in english.items():
            assert record["answer_lang"] == "en"
            assert record["english_title"] == english_titles[(lang, record["answer_title"])]
            assert record["answer"] == mlqa_pt.english_answer(record["english_title"])
            assert not record["answer"].endswith(")") and record["answer"]
            disambiguated += record["answer"] != record["english_title"]
            # The same anchor cloze as the default mode mines (same qid), with the anchor kept aside.
            assert record["target_answer"] == target[qid]["answer"]
            assert {key: value for key, value in record.items()
                    if key not in ("answer", "target_answer", "english_title", "answer_lang")} == {
                        key: value for key, value in target[qid].items() if key != "answer"}
        questions = _records(root / "english", "mlqa_pt", lang)
        assert questions and set(questions) <= set(english)
        for qid, question in questions.items():
            assert question["answer"] == english[qid]["answer"] and question["target_answer"] == target[qid]["answer"]
            assert not mlqa_pt.contains_phrase(question["question"], question["target_answer"], lang)
            assert not mlqa_pt.contains_english_phrase(question["question"], question["answer"])
    assert disambiguated > 0  # Some demo titles carry " (film)"-style disambiguators, stripped from the answer.


def test_anchors_without_an_english_article_are_dropped_and_counted(mined):
    root, target_manifest, english_manifest = mined
    english_titles = _english_titles(root / "corpus")
    for lang in LANGS:
        counts = english_manifest["stages"]["mlqa_pt"]["counts"][lang]
        default = target_manifest["stages"]["mlqa_pt"]["counts"][lang]
        dropped = counts.get("dropped", {})
        assert dropped.get("no_english_article", 0) > 0, lang
        assert counts["links"] == default["links"] == counts["kept"] + sum(dropped.values())
        # The English checks come last: they drop exactly what the default mode keeps and this mode does not.
        english_only = dropped.get("no_english_article", 0) + dropped.get("english_answer_in_cloze", 0)
        assert default["kept"] == counts["kept"] + english_only
        for reason, n in default.get("dropped", {}).items():
            assert dropped[reason] == n
        target = _records(root / "target", "mlqa_pt_clozes", lang)
        english = _records(root / "english", "mlqa_pt_clozes", lang)
        missing = [record for qid, record in target.items() if qid not in english]
        without_english = [r for r in missing if (lang, r["answer_title"]) not in english_titles]
        assert len(without_english) == dropped["no_english_article"]
        assert all((lang, record["answer_title"]) in english_titles for record in english.values())


def test_default_mode_output_is_unchanged(mined, tmp_path):
    root, target_manifest, _ = mined
    for dataset in ("mlqa_pt_clozes", "mlqa_pt"):
        info = target_manifest["datasets"][dataset]
        assert "answer_lang" not in info and info["features"] == dataset_io.FEATURES[dataset]
        for lang in LANGS:
            records = list(dataset_io.read_dataset(str(root / "target"), dataset, lang))
            expected = HISTORICAL_CLOZE_KEYS | ({"question"} if dataset == "mlqa_pt" else set())
            assert records and all(set(record) == expected for record in records)
    for step in ("mlqa_pt", "mlqa_pt_questions"):
        assert "answer_lang" not in target_manifest["stages"][step]["settings"]
    # Naming the default explicitly is the same run: the rerun skips every step and changes no byte.
    shutil.copytree(root / "target", tmp_path / "out")
    rerun = pipeline.run_mining(_config(root / "corpus", tmp_path / "out", mlqa_pt_answer_lang="target"))
    assert rerun == target_manifest
    assert demo_mining._tree_digests(tmp_path / "out") == demo_mining._tree_digests(root / "target")


def test_the_answer_language_is_in_the_fingerprint_and_the_manifest(mined, tmp_path, capsys):
    root, target_manifest, english_manifest = mined
    for dataset in ("mlqa_pt_clozes", "mlqa_pt"):
        info = english_manifest["datasets"][dataset]
        assert info["answer_lang"] == "en"
        assert info["features"] == dataset_io.features_of(dataset, "en")
        assert set(dataset_io.MLQA_PT_ENGLISH_ANSWER_FEATURES) <= set(info["features"])
        examples = dataset_io.read_tfrecord_examples(
            str(sorted((root / "english" / dataset / "ja").glob("*.tfrecord"))[0]))
        assert examples and all(example["answer_lang"] == ["en"] and example["target_answer"][0]
                                for example in examples)
    for step in ("mlqa_pt", "mlqa_pt_questions"):
        assert english_manifest["stages"][step]["settings"]["answer_lang"] == "en"
    # Switching modes in one output folder reruns both steps, giving exactly a fresh run's files; and back. (The
    # counts differ only in rewrites served from the shared cache: both modes ask about the same anchors.)
    out = tmp_path / "out"
    shutil.copytree(root / "target", out)
    for config, reference, manifest in ((_config(root / "corpus", out, mlqa_pt_answer_lang="en"), root / "english",
                                         english_manifest),
                                        (_config(root / "corpus", out), root / "target", target_manifest)):
        capsys.readouterr()
        rerun = pipeline.run_mining(config)
        assert "already done" not in capsys.readouterr().out
        folders = {"mlqa_pt", "mlqa_pt_clozes"}
        assert demo_mining._tree_digests(out, folders) == demo_mining._tree_digests(reference, folders)
        assert rerun["datasets"] == manifest["datasets"] and rerun["files"] == manifest["files"]
        for step in ("mlqa_pt", "mlqa_pt_questions"):
            assert rerun["stages"][step]["settings"] == manifest["stages"][step]["settings"]


def test_fid_files_built_from_english_answer_data_train_on_the_english_answers(mined, tmp_path, capsys):
    root, _, _ = mined
    out = tmp_path / "fid" / "{lang}"
    code = cli.main(["build-fid", "--kind", "mlqa_pt", "--corpus", str(root / "corpus"), "--mined",
                     str(root / "english"), "--langs", "ja", "ru", "--retriever", "bm25", "--k", "3", "--out",
                     str(out)])
    assert code == 0, capsys.readouterr()
    for lang in ("ja", "ru"):
        questions = _records(root / "english", "mlqa_pt", lang)
        fid_dir = str(tmp_path / "fid" / lang)
        examples = list(fid_files.read_fid_examples(fid_dir))
        assert len(examples) == len(questions) > 0
        for example in examples:
            record = questions[example.id]
            assert example.target == record["answer"] and example.answers == (record["answer"],)
            assert example.target == mlqa_pt.english_answer(record["english_title"])
            assert example.question == record["question"]
        assert fid_files.read_manifest(fid_dir)["metadata"]["answer_lang"] == "en"


def test_cli_flag_selects_english_answers(tmp_path):
    parser = argparse.ArgumentParser()
    mine_command.add_arguments(parser)
    argv = ["--corpus", "c", "--out", str(tmp_path), "--langs", "ja"]
    assert mine_command.config_from_args(parser.parse_args(argv)).mlqa_pt_answer_lang == "target"
    config = mine_command.config_from_args(parser.parse_args(argv + ["--mlqa_pt_answer_lang", "en"]))
    assert config.mlqa_pt_answer_lang == "en"
    with pytest.raises(UserError, match="--mlqa_pt_answer_lang 'fr'"):
        pipeline.run_mining(pipeline.MiningConfig(corpus="c", out=str(tmp_path), langs=("ja",),
                                                  mlqa_pt_answer_lang="fr"))


# -- the pieces ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("title, answer", [
    ("Mercury (planet)", "Mercury"), ("Tokyo", "Tokyo"), ("Heat (1995 film)", "Heat"), ("(Untitled)", "(Untitled)"),
])
def test_english_answer_strips_the_disambiguator(title, answer):
    assert mlqa_pt.english_answer(title) == answer


@pytest.mark.parametrize("text, phrase, expected", [
    ("東京 (Tokyo) は首都である。", "Tokyo", 1),
    ("NHKの番組は何ですか？", "NHK", 1),
    ("Tokyoite という言葉", "Tokyo", 0),
    ("Москва (Moscow) — столица.", "moscow", 1),
    ("Die Stadt São Paulo liegt in Brasilien.", "Sao Paulo", 0),
    ("Die Stadt São Paulo liegt in Brasilien.", "São Paulo", 1),
])
def test_contains_english_phrase(text, phrase, expected):
    assert mlqa_pt.contains_english_phrase(text, phrase) == expected


def test_leak_filter_checks_the_anchor_and_the_english_answer():
    assert filters.rejection_reason("東京都の首都はどこの国ですか？", "ja", "日本", "日本",
                                    english_answer="Japan") is None
    assert filters.rejection_reason("日本の首都はどこですか？", "ja", "日本", "日本",
                                    english_answer="Japan") == "answer_leaked"
    assert filters.rejection_reason("Japanの首都はどこですか？", "ja", "日本", "日本",
                                    english_answer="Japan") == "english_answer_leaked"
    # Without an English answer (the default records) an English name in the question is not checked.
    assert filters.rejection_reason("Japanの首都はどこですか？", "ja", "日本", "日本") is None


class _RecordingRewriter(rewrite.Rewriter):
    def __init__(self):
        self.requests = []

    def config(self) -> dict:
        return {"kind": "recording"}

    def rewrite(self, requests, on_result=None):
        self.requests += list(requests)
        return [rewrite.RewriteResult(question) for question in
                ("東京都はどこの国の首都ですか？", "Japanの首都はどこですか？")][:len(requests)]


def test_rewriting_masks_the_anchor_and_filters_the_english_answer():
    base = {"lang": "ja", "cloze": "東京都は_X_の首都である。", "answer": "Japan", "answer_title": "日本",
            "target_answer": "日本", "english_title": "Japan", "answer_lang": "en"}
    records = [dict(base, qid="a"), dict(base, qid="b")]
    recording, report = _RecordingRewriter(), rewrite.RewriteReport()
    kept = list(rewrite.rewrite_records(records, recording, report=report))
    assert [request.answer for request in recording.requests] == ["日本", "日本"]
    assert [record["qid"] for record in kept] == ["a"] and kept[0]["answer"] == "Japan"
    assert report.filtered == {"english_answer_leaked": 1}


def test_extractor_drops_links_without_english_titles():
    text = "東京都は日本の首都であり、国内で最も人口の多い都市である。"
    article = Article(lang="ja", page_id=7, title="東京都", text=text, links=(Link(4, 6, "日本", "日本"),))
    extractor = mlqa_pt.AnchorClozeExtractor(answer_lang="en")
    assert extractor.extract(article, english_titles={}) == []
    assert extractor.report()["dropped"] == {"no_english_article": 1}
    [cloze] = extractor.extract(article, english_titles={"日本": "Japan (country)"})
    assert (cloze.answer, cloze.target_answer, cloze.english_title) == ("Japan", "日本", "Japan (country)")
    [default] = mlqa_pt.AnchorClozeExtractor().extract(article)
    assert default.qid == cloze.qid and default.answer == "日本"
    assert set(default.to_dict()) == HISTORICAL_CLOZE_KEYS
    with pytest.raises(ValueError, match="answer_lang"):
        mlqa_pt.AnchorClozeExtractor(answer_lang="de")
