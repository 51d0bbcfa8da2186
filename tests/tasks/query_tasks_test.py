"""Query-level tasks on the real XOR-TyDi and MKQA files, NQ-open (DPR CSV and TFDS mock data), the demo sets."""

import json
import os

import pytest
import seqio
import tensorflow_datasets as tfds

from class_jax.runtime.errors import UserError
from class_jax.evaluation import mkqa
from class_jax.tasks import text_inputs
from class_jax.tasks import query_sources
from class_jax.tasks import query_tasks
from class_jax.tasks import vocab

LENGTHS = {"query_tokens": 50, "targets": 50}


def _examples(task_name, split="validation", lengths=LENGTHS):
    task = seqio.get_mixture_or_task(task_name)
    return list(task.get_dataset(lengths, split=split, shuffle=False).as_numpy_iterator())


def _file_records(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _check_against_records(examples, records, vocabulary):
    assert len(examples) == len(records)
    for example, record in zip(examples, records):
        assert example["id"].decode() == str(record["id"])
        assert example["lang"].decode() == record["lang"].strip()
        assert example["question"].decode() == record["question"]
        answers = record["answers"] if isinstance(record["answers"], list) else [record["answers"]]
        assert [a.decode() for a in example["answers"]] == answers
        assert example["query_tokens"].tolist() == text_inputs.query_ids(vocabulary, record["question"])
        assert example["targets"].tolist() == list(vocabulary.encode(answers[0]))[:49] + [1]


@pytest.mark.parametrize("task, split, file_name", [
    ("xor_retrieve", "validation", "xor_dev_retrieve_eng_span_v1_1.jsonl"),
    ("xor_retrieve", "train", "xor_train_retrieve_eng_span.jsonl"),
    ("xor_full", "validation", "xor_dev_full_v1_1.jsonl"),
])
def test_xor_tydi_tasks_yield_every_record_of_the_real_files(shared_dir, demo, task, split, file_name):
    vocabulary = vocab.get_vocabulary(str(demo["vocab"]))
    xor_dir = shared_dir / "data" / "xor_tydi"
    registered = query_tasks.register_xor_tydi_tasks(xor_dir, vocabulary=vocabulary)
    assert {t.name: t.splits for t in registered} == {"xor_retrieve": ("train", "validation"),
                                                       "xor_full": ("validation",)}
    _check_against_records(_examples(task, split), _file_records(xor_dir / file_name), vocabulary)


def test_mkqa_tasks_convert_each_language_like_the_scorer(shared_dir, demo):
    vocabulary = vocab.get_vocabulary(str(demo["vocab"]))
    path = shared_dir / "data" / "mkqa" / "test_mkqa_6examples.jsonl.gz"
    mixture = query_tasks.register_mkqa_tasks(path, languages=["ja", "zh_cn", "de"], vocabulary=vocabulary)
    assert sorted(t.name for t in mixture.tasks) == ["mkqa_de", "mkqa_ja", "mkqa_zh_cn"]
    for lang in ("ja", "zh_cn"):
        gold = mkqa.convert_to_xor(mkqa.load_mkqa_records(str(path)), languages=[lang]).questions
        records = [{"id": q.id, "lang": q.lang, "question": q.question, "answers": list(q.answers)} for q in gold]
        assert records, lang
        _check_against_records(_examples(f"mkqa_{lang}"), records, vocabulary)
    with pytest.raises(UserError, match="'xx' is not an MKQA language"):
        query_sources.load_mkqa_questions(path, "xx")


def test_nq_csv_parses_python_lists_and_names_the_bad_line(tmp_path, test_vocab):
    good = tmp_path / "nq-dev.qa.csv"
    good.write_text("who got the first nobel prize in physics\t['Wilhelm Conrad Röntgen']\n"
                    "when is the next deadpool movie being released\t['May 18 , 2018', \"May 18, '18\"]\n",
                    encoding="utf-8")
    query_tasks.register_nq_open_task({"validation": good}, vocabulary=test_vocab)
    examples = _examples("nq_open")
    assert [e["id"].decode() for e in examples] == ["nq_validation_1", "nq_validation_2"]
    assert [a.decode() for a in examples[1]["answers"]] == ["May 18 , 2018", "May 18, '18"]
    assert examples[0]["lang"] == b"en"

    bad = tmp_path / "nq-train.qa.csv"
    bad.write_text("a fine question\t['yes']\nwhat is __import__('os')\t__import__('os').getcwd()\n")
    query_tasks.register_nq_open_task({"train": bad}, vocabulary=test_vocab)
    with pytest.raises(UserError, match=f"{bad}: line 2: the answers .* are not a Python list literal"):
        _examples("nq_open", split="train")
    for text, message in (("no tab here\n", "found no tab"), ("q\t'just a string'\n", "non-empty list of strings"),
                          ("q\t[]\n", "non-empty list of strings"), ("\t['a']\n", "empty question")):
        bad.write_text(text)
        with pytest.raises(UserError, match=f"line 1: .*{message}"):
            query_sources.load_nq_csv(bad, "train")


def test_tfds_nq_open_source_with_mock_data(tmp_path, test_vocab):
    # USE_FILES mocking needs the dataset's metadata (split sizes) in a data dir; write it from the builder.
    builder = tfds.builder("natural_questions_open:1.0.0", data_dir=str(tmp_path))
    builder.info.set_splits(tfds.core.SplitDict([
        tfds.core.SplitInfo(name=split, shard_lengths=[count], num_bytes=0, filename_template=None)
        for split, count in (("train", 4), ("validation", 3))]))
    os.makedirs(builder.data_dir, exist_ok=True)
    builder.info.write_to_directory(builder.data_dir)
    query_tasks.register_nq_open_tfds_task(vocabulary=test_vocab, tfds_data_dir=str(tmp_path))
    with tfds.testing.mock_data(num_examples=3, policy=tfds.testing.MockPolicy.USE_FILES, data_dir=str(tmp_path)):
        examples = _examples("nq_open_tfds")
        raw = list(tfds.load("natural_questions_open:1.0.0", split="validation", data_dir=str(tmp_path),
                             shuffle_files=False).as_numpy_iterator())
    assert len(examples) == 3
    for example, source in zip(examples, raw):
        assert example["question"] == source["question"] and example["lang"] == b"en"
        assert example["answers"].tolist() == source["answer"].tolist()
        assert example["id"].decode().startswith("nq_")
        assert example["query_tokens"].tolist() == text_inputs.query_ids(test_vocab, source["question"].decode())
    assert len({e["id"] for e in examples}) == 3


def test_demo_question_sets(demo):
    vocabulary = vocab.get_vocabulary(str(demo["vocab"]))
    tasks = query_tasks.register_demo_question_tasks(demo["wiki"], vocabulary=vocabulary)
    assert [t.name for t in tasks] == ["demo_xor_retrieve", "demo_xor_full"]
    for task, file_name in (("demo_xor_full", "xor_train_full.jsonl"),
                            ("demo_xor_retrieve", "xor_dev_retrieve_eng_span_v1_1.jsonl")):
        split = "train" if "train" in file_name else "validation"
        examples = _examples(task, split)
        _check_against_records(examples, _file_records(demo["wiki"] / "xor_tydi" / file_name), vocabulary)
        assert vocabulary.decode(examples[0]["query_tokens"].tolist()) == \
            "question: " + examples[0]["question"].decode()


def test_missing_and_malformed_question_files_fail_at_load(tmp_path, test_vocab):
    query_tasks.register_question_file_task("test_missing_questions", {"validation": tmp_path / "nope.jsonl"},
                                            vocabulary=test_vocab)
    with pytest.raises(UserError, match=f"{tmp_path / 'nope.jsonl'}: no such file"):
        _examples("test_missing_questions")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "1", "lang": "ja", "question": "q", "answers": ["a"]}\n{"id": "2", "lang": "ja"}\n')
    query_tasks.register_question_file_task("test_bad_questions", {"validation": bad}, vocabulary=test_vocab)
    with pytest.raises(UserError, match=f"{bad}: line 2: missing field 'answers'"):
        _examples("test_bad_questions")
    bad.write_text('{"id": "1", "lang": "ja", "answers": ["a"]}\n')
    with pytest.raises(UserError, match=f"{bad}: line 1: record '1' has no 'question' text"):
        _examples("test_bad_questions")
    with pytest.raises(UserError, match="none of the XOR-TyDi files"):
        query_tasks.register_xor_tydi_tasks(tmp_path, vocabulary=test_vocab)


def test_environment_registers_the_configured_tasks(shared_dir, demo):
    names = query_tasks.register_from_environment({
        "CLASS_JAX_XOR_TYDI_DIR": str(shared_dir / "data" / "xor_tydi"),
        "CLASS_JAX_MKQA_FILE": str(shared_dir / "data" / "mkqa" / "test_mkqa_6examples.jsonl.gz"),
        "CLASS_JAX_DEMO_DIR": str(demo["wiki"]),
    })
    assert names == ["nq_open_tfds", "xor_retrieve", "xor_full", "mkqa", "demo_xor_retrieve", "demo_xor_full"]
    assert len(seqio.get_mixture_or_task("mkqa").tasks) == len(mkqa.MKQA_LANGUAGES)
