"""Stage-1 / stage-2 FiD tasks built from `class-jax mine` outputs (written here with the mining writer itself)."""

import pytest
import seqio

from class_jax.mining import dataset_io
from class_jax.corpus.types import Passage
from class_jax.runtime.errors import UserError
from class_jax.tasks import text_inputs
from class_jax.fid import builders
from class_jax.tasks import fid_files
from class_jax.tasks import fid_tasks

K = 3
LENGTHS = {"query_tokens": 16, "passage_tokens": (K, 32), "targets": 8}
STAGE1_LENGTHS = {**LENGTHS, "english_query_tokens": 16, "teacher_scores": K}
WORDS = ["red", "blue", "cat", "dog", "sun", "moon"]

PASSAGES = {f"{lang}:{page}:0": Passage(f"{lang}:{page}:0", lang, f"{WORDS[page % 6]} page {page}",
                                        f"the {WORDS[page % 6]} and the {WORDS[(page + 1) % 6]}")
            for lang in ("en", "ja") for page in range(8)}


class OverlapRetriever:
    """A deterministic test retriever: ranks same-language passages by shared words, ties by id."""

    def __init__(self, lang: str):
        self.ids = sorted(pid for pid, p in PASSAGES.items() if p.lang == lang)

    def top_k(self, queries, k):
        results = []
        for query in queries:
            words = set(query.split())
            scored = sorted(((-len(words & set(f"{PASSAGES[i].title} {PASSAGES[i].text}".split())), i)
                             for i in self.ids))[:k]
            results.append(([i for _, i in scored], [float(-s) for s, _ in scored]))
        return results


def _clr_pt_record(lang: str, i: int) -> dict:
    ids = [f"en:{(i + j) % 8}:0" for j in range(K)]
    return {"qid": f"clr-{lang}-{i:04d}", "lang": lang, "english_cloze": f"the {WORDS[i % 6]} saw _X_",
            "target_cloze": f"{WORDS[(i + 2) % 6]} _X_ {i}", "answer": WORDS[(i + 3) % 6],
            "target_answer": f"{lang} {WORDS[(i + 3) % 6]}", "teacher_passage_ids": ids,
            "teacher_scores": [float(10 - j) + i for j in range(K)]}


def _mlqa_pt_record(lang: str, i: int) -> dict:
    return {"qid": f"mlqa-{lang}-{i:04d}", "lang": lang, "question": f"where is the {WORDS[i % 6]}",
            "answer": WORDS[(i + 1) % 6], "source_passage_id": f"{lang}:{i % 8}:0", "cloze": "", "answer_title": "",
            "source_title": "", "source_page_id": i % 8}


@pytest.fixture()
def mined(tmp_path):
    root = str(tmp_path / "mined")
    dataset_io.write_shard(root, "clr_pt_teacher", "ja", 0, 1, [_clr_pt_record("ja", i) for i in range(5)])
    dataset_io.write_shard(root, "mlqa_pt", "ja", 0, 1, [_mlqa_pt_record("ja", i) for i in range(4)])
    return root


def _examples(task_name, lengths):
    ds = seqio.get_mixture_or_task(task_name).get_dataset(lengths, split="train", shuffle=False)
    return {e["id"].decode(): e for e in ds.as_numpy_iterator()}


def test_clr_pt_fid_task_from_mined_teacher_records(mined, tmp_path, test_vocab):
    template = str(tmp_path / "clr_pt_fid" / "{lang}")
    manifests = builders.write_clr_pt_fid_files(mined, PASSAGES, template, ["ja"], num_passages=K)
    assert manifests["ja"]["num_examples"] == 5 and manifests["ja"]["has"]["teacher_scores"]
    fid_tasks.register_language_mixture("test_clr_pt", template, ["ja"], "clr_pt", vocabulary=test_vocab)
    examples = _examples("test_clr_pt_ja", STAGE1_LENGTHS)
    for record in dataset_io.read_dataset(mined, "clr_pt_teacher", "ja"):
        example = examples[record["qid"]]
        assert example["query_tokens"].tolist() == text_inputs.query_ids(test_vocab, record["target_cloze"], 16)
        assert example["english_query_tokens"].tolist() == \
            text_inputs.query_ids(test_vocab, record["english_cloze"], 16)
        assert example["teacher_scores"].tolist() == record["teacher_scores"]
        for slot, passage_id in enumerate(record["teacher_passage_ids"]):
            passage = PASSAGES[passage_id]
            expected = text_inputs.passage_ids(test_vocab, passage.title, passage.text, 32)
            assert example["passage_tokens"][slot][:len(expected)].tolist() == expected
        assert example["targets_pretokenized"].decode() == record["answer"]


def test_clr_pt_passages_from_a_retriever_replace_the_mined_teachers(mined, tmp_path):
    root = str(tmp_path / "mined_plain")
    plain = [{k: v for k, v in _clr_pt_record("ja", i).items() if not k.startswith("teacher_")} for i in range(5)]
    dataset_io.write_shard(root, "clr_pt", "ja", 0, 1, plain)
    template = str(tmp_path / "retrieved" / "{lang}")
    builders.write_clr_pt_fid_files(root, PASSAGES, template, ["ja"], num_passages=K,
                                    retriever=OverlapRetriever("en"))
    written = {e.id: e for e in fid_files.read_fid_examples(template.format(lang="ja"))}
    for record in plain:
        ids, scores = OverlapRetriever("en").top_k([record["english_cloze"]], K)[0]
        assert [p.id for p in written[record["qid"]].passages] == ids
        assert list(written[record["qid"]].teacher_scores) == scores


def test_mlqa_pt_fid_task_excludes_the_source_passage(mined, tmp_path, test_vocab):
    template = str(tmp_path / "mlqa_pt_fid" / "{lang}")
    builders.write_mlqa_pt_fid_files(mined, OverlapRetriever("ja"), PASSAGES, template, ["ja"], num_passages=K)
    written = {e.id: e for e in fid_files.read_fid_examples(template.format(lang="ja"))}
    for record in dataset_io.read_dataset(mined, "mlqa_pt", "ja"):
        example = written[record["qid"]]
        assert len(example.passages) == K and example.source_passage_id == record["source_passage_id"]
        assert record["source_passage_id"] not in [p.id for p in example.passages]
        ranked = OverlapRetriever("ja").top_k([record["question"]], K + 1)[0][0]
        assert [p.id for p in example.passages] == [i for i in ranked if i != record["source_passage_id"]][:K]
    fid_tasks.register_language_mixture("test_mlqa_pt", template, ["ja"], "mlqa_pt", vocabulary=test_vocab)
    examples = _examples("test_mlqa_pt_ja", LENGTHS)
    assert len(examples) == 4 and all(e["passage_tokens"].any(axis=-1).all() for e in examples.values())


def test_mined_input_errors_name_the_problem(mined, tmp_path):
    with pytest.raises(UserError, match="no mined clr_pt_teacher records for 'ko'"):
        builders.write_clr_pt_fid_files(mined, PASSAGES, str(tmp_path / "{lang}"), ["ko"], num_passages=K)
    with pytest.raises(UserError, match=r"CLR-PT record 1 \(qid 'clr-ja-0000'\): passage 'en:0:0' is not in"):
        builders.write_clr_pt_fid_files(mined, {}, str(tmp_path / "{lang}"), ["ja"], num_passages=K)
    record = _clr_pt_record("ja", 0)
    del record["teacher_scores"]
    with pytest.raises(UserError, match="needs teacher_passage_ids and teacher_scores"):
        list(builders.fid_examples_from_clr_pt([record], PASSAGES))
