"""Tests for the stage-1 English teacher: BM25 against a brute-force BM25, determinism, save/load, attaching."""

import collections
import json
import math

import pytest

from class_jax.mining import teacher as teacher_lib
from class_jax.corpus.types import Passage
from class_jax.runtime.errors import UserError

TEXTS = [
    ("Paris", "Paris is the capital and most populous city of France, on the river Seine."),
    ("Berlin", "Berlin is the capital and largest city of Germany by both area and population."),
    ("Seine", "The Seine is a river in northern France that flows through Paris into the English Channel."),
    ("Rhine", "The Rhine is a river that begins in the Swiss Alps and flows through Germany to the North Sea."),
    ("Eiffel Tower", "The Eiffel Tower is a wrought-iron lattice tower in Paris, designed by Gustave Eiffel."),
    ("Gustave Eiffel", "Gustave Eiffel was a French civil engineer whose company designed the Eiffel Tower."),
    ("Channel", "The English Channel separates southern England from northern France."),
    ("Alps", "The Alps are the highest mountain range in Europe, stretching across eight countries."),
]
PASSAGES = [Passage(f"en:{100 + index}:0", "en", title, text) for index, (title, text) in enumerate(TEXTS)]
QUERIES = ["_X_ is the capital of France.", "Which river flows through Paris?", "The tower was designed by _X_.",
           "mountain ranges of Europe", "rivers flowing to the North Sea through Germany"]


def brute_force_scores(query: str, passages: list[Passage], tokenizer, k1: float, b: float,
                       include_title: bool) -> list[float]:
    """BM25 from the formula, independently of bm25s: Lucene idf and term-frequency saturation."""
    documents = [tokenizer(teacher_lib.passage_text(passage, include_title)) for passage in passages]
    average_length = sum(len(document) for document in documents) / len(documents)
    document_frequency = collections.Counter(token for document in documents for token in set(document))
    scores = []
    for document in documents:
        counts = collections.Counter(document)
        score = 0.0
        for token in tokenizer(query):
            if counts[token] == 0:
                continue
            df = document_frequency[token]
            idf = math.log(1 + (len(documents) - df + 0.5) / (df + 0.5))
            tf = counts[token]
            score += idf * tf / (tf + k1 * (1 - b + b * len(document) / average_length))
        scores.append(score)
    return scores


@pytest.mark.parametrize("k1, b, stemmer, include_title", [
    (0.9, 0.4, "auto", True), (1.5, 0.75, None, False), (1.2, 0.0, "porter", True)])
def test_bm25_matches_brute_force(k1, b, stemmer, include_title):
    teacher = teacher_lib.BM25Teacher.build(PASSAGES, k1=k1, b=b, stemmer=stemmer, include_title=include_title)
    ids_in_index_order = sorted(passage.passage_id for passage in PASSAGES)
    by_id = {passage.passage_id: passage for passage in PASSAGES}
    ordered = [by_id[passage_id] for passage_id in ids_in_index_order]
    for query in QUERIES:
        expected = brute_force_scores(query, ordered, teacher.tokenizer, k1, b, include_title)
        assert list(teacher.scores(query)) == pytest.approx(expected, rel=1e-5, abs=1e-6)
        ranked = sorted(range(len(ordered)), key=lambda index: (-expected[index], ids_in_index_order[index]))
        passage_ids, scores = teacher.top_k([query], 3)[0]
        assert passage_ids == [ids_in_index_order[index] for index in ranked[:3]]
        assert scores == pytest.approx([expected[index] for index in ranked[:3]], rel=1e-5)


def test_top_k_answers_the_obvious_queries():
    teacher = teacher_lib.BM25Teacher.build(PASSAGES)
    results = teacher.top_k(QUERIES[:3], 2)
    titles = {passage.passage_id: passage.title for passage in PASSAGES}
    assert [titles[ids[0]] for ids, _ in results] == ["Paris", "Seine", "Eiffel Tower"]
    assert all(scores[0] >= scores[1] for _, scores in results)


def test_mask_token_is_not_a_query_term():
    teacher = teacher_lib.BM25Teacher.build(PASSAGES + [Passage("en:1:0", "en", "Mask", "x _X_ X x")])
    assert teacher.tokenizer("The _X_ flows.") == teacher.tokenizer("The flows.")
    with_mask = teacher.top_k(["_X_ is the capital of France."], 4)
    without = teacher.top_k(["is the capital of France."], 4)
    assert with_mask == without
    assert list(teacher.scores("_X_")) == [0.0] * 9


def test_tokenizer_lowercases_drops_stopwords_and_stems():
    tokenizer = teacher_lib.EnglishTokenizer("snowball")
    assert tokenizer("The Rivers are FLOWING into the Capitals!") == ["river", "flow", "capit"]
    assert teacher_lib.EnglishTokenizer(None)("The Rivers are FLOWING") == ["rivers", "flowing"]


def test_ties_are_broken_by_passage_id_whatever_the_input_order():
    twins = [Passage(f"en:{page}:0", "en", "Twin", "identical text about lighthouses") for page in (9, 3, 7, 5, 1)]
    other = Passage("en:4:0", "en", "Other", "a passage about ships")
    forward = teacher_lib.BM25Teacher.build(twins + [other])
    backward = teacher_lib.BM25Teacher.build(list(reversed(twins + [other])))
    for teacher in (forward, backward):
        passage_ids, scores = teacher.top_k(["lighthouses"], 3)[0]
        assert passage_ids == ["en:1:0", "en:3:0", "en:5:0"]
        assert len(set(scores)) == 1 and scores[0] > 0
        # Fewer matches than k: the rest is filled with zero-score passages, again in id order.
        passage_ids, scores = teacher.top_k(["ships"], 3)[0]
        assert passage_ids == ["en:4:0", "en:1:0", "en:3:0"] and scores[1:] == [0.0, 0.0]


def test_k_is_capped_at_the_collection_size_and_must_be_positive():
    teacher = teacher_lib.BM25Teacher.build(PASSAGES)
    assert len(teacher.top_k(["Paris"], 100)[0][0]) == len(PASSAGES)
    with pytest.raises(ValueError):
        teacher.top_k(["Paris"], 0)


def test_save_and_load_round_trip(tmp_path):
    teacher = teacher_lib.BM25Teacher.build(PASSAGES, k1=1.1, b=0.6)
    teacher.save(tmp_path / "index")
    loaded = teacher_lib.BM25Teacher.load(tmp_path / "index")
    assert loaded.top_k(QUERIES, 5) == teacher.top_k(QUERIES, 5)
    assert loaded.describe() == teacher.describe()
    assert loaded.describe()["k1"] == 1.1 and loaded.describe()["stemmer"] == "snowball"


def test_load_refuses_incomplete_or_foreign_folders(tmp_path):
    with pytest.raises(UserError, match="teacher.json"):
        teacher_lib.BM25Teacher.load(tmp_path / "missing")
    teacher_lib.BM25Teacher.build(PASSAGES).save(tmp_path / "index")
    config_path = tmp_path / "index" / "teacher.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps(dict(config, format_version=99)))
    with pytest.raises(UserError, match="format_version"):
        teacher_lib.BM25Teacher.load(tmp_path / "index")


@pytest.mark.parametrize("passages, message", [
    ([Passage("de:1:0", "de", "Berlin", "Berlin ist die Hauptstadt.")], "language 'de'"),
    ([PASSAGES[0], PASSAGES[0]], "duplicate passage id"),
    ([], "at least one passage"),
])
def test_build_rejects_bad_collections(passages, message):
    with pytest.raises(UserError, match=message):
        teacher_lib.BM25Teacher.build(passages)


class CountingTeacher(teacher_lib.Teacher):
    """Wraps a teacher and records the batch sizes it is called with."""

    def __init__(self, inner):
        self.inner = inner
        self.batches = []

    def top_k(self, queries, k):
        self.batches.append(len(queries))
        return self.inner.top_k(queries, k)


def test_attach_teacher_passages_streams_in_batches():
    bm25 = teacher_lib.BM25Teacher.build(PASSAGES)
    counting = CountingTeacher(bm25)
    records = ({"qid": f"q{index}", "english_cloze": query, "target_cloze": f"target {index} _X_", "answer": "a"}
               for index, query in enumerate(QUERIES))
    attached = teacher_lib.attach_teacher_passages(records, counting, k=3, batch_size=2)
    first = next(attached)
    assert counting.batches == [2]  # Lazy: only the first batch was retrieved so far.
    rest = list(attached)
    assert counting.batches == [2, 2, 1]
    outputs = [first] + rest
    assert [output["qid"] for output in outputs] == [f"q{index}" for index in range(5)]
    assert outputs[0]["target_cloze"] == "target 0 _X_"
    for output, query in zip(outputs, QUERIES):
        passage_ids, scores = bm25.top_k([query], 3)[0]
        assert output["teacher_passage_ids"] == passage_ids and output["teacher_scores"] == scores
    json.dumps(outputs)  # Plain JSON types, ready to be written.


def test_attach_teacher_passages_names_a_bad_record():
    bm25 = teacher_lib.BM25Teacher.build(PASSAGES)
    records = [{"qid": "q1", "english_cloze": "Paris"}, {"qid": "q2", "target_cloze": "x"}]
    with pytest.raises(UserError, match="record 2 .*'q2'.*english_cloze"):
        list(teacher_lib.attach_teacher_passages(records, bm25, k=2))
