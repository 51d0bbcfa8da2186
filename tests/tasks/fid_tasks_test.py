"""FiD tasks: every kind registers and yields correctly shaped, correctly tokenised features; metrics wiring."""

import numpy as np
import pytest
import seqio

from class_jax.runtime.errors import UserError
from class_jax.tasks import text_inputs
from class_jax.models import feature_converter as feature_converters
from class_jax.tasks import fid_files
from class_jax.tasks import fid_tasks
from class_jax.tasks import vocab

K, LQ, LP, LA = 3, 12, 24, 8
LENGTHS = {"query_tokens": LQ, "passage_tokens": (K, LP), "targets": LA}
STAGE1_LENGTHS = {**LENGTHS, "english_query_tokens": LQ, "teacher_scores": K}
WORDS = ["red", "blue", "cat", "dog", "sun", "moon", "tree", "river"]


def _records(count: int, passages_per_record, lang="ja", **extra_fields) -> list[dict]:
    records = []
    for i in range(count):
        n = passages_per_record(i)
        answer = WORDS[i % len(WORDS)]
        records.append(dict(
            id=f"q{i}", lang=lang, question=f"where is the {WORDS[(i + 1) % len(WORDS)]} {i}",
            answers=[answer, f"the {answer}"], target=answer,
            passages=[dict(id=f"p{i}_{j}", title=f"{WORDS[j % 8]} title", score=5.0 - j,
                           text=" ".join([WORDS[(i + j) % 8]] * (3 + 4 * j)) + (f" {answer}" if j == 0 else ""))
                      for j in range(n)],
            **{name: value(i, n) for name, value in extra_fields.items()}))
    return records


@pytest.fixture()
def fid_dir(tmp_path):
    def write(records, name="fid", num_passages=4):
        fid_files.write_fid_examples(records, str(tmp_path / name), 2, num_passages=num_passages)
        return str(tmp_path / name)
    return write


def _examples(task_name, lengths, split="train"):
    task = seqio.get_mixture_or_task(task_name)
    return list(task.get_dataset(lengths, split=split, shuffle=False).as_numpy_iterator())


def _by_id(examples):
    return {example["id"].decode(): example for example in examples}


def test_qa_task_tokenises_like_the_retrieval_inputs(fid_dir, test_vocab):
    records = _records(5, lambda i: i % 5)  # 0..4 passages: padded to k = 3, or cut to the top 3
    fid_tasks.register_fid_task("test_fid_qa", fid_dir(records), "finetune", vocabulary=test_vocab)
    examples = _by_id(_examples("test_fid_qa", LENGTHS))
    assert len(examples) == 5
    for record in records:
        example = examples[record["id"]]
        assert example["query_tokens"].tolist() == text_inputs.query_ids(test_vocab, record["question"], LQ)
        assert example["passage_tokens"].shape == (K, LP)
        kept = record["passages"][:K]
        for slot in range(K):
            row = example["passage_tokens"][slot]
            if slot < len(kept):
                expected = text_inputs.passage_ids(test_vocab, kept[slot]["title"], kept[slot]["text"], LP)
                assert row[:len(expected)].tolist() == expected and not row[len(expected):].any()
            else:
                assert not row.any()
        assert example["targets"].tolist() == list(test_vocab.encode(record["target"]))[:LA - 1] + [1]
        assert example["targets_pretokenized"].decode() == record["target"]
        assert example["num_passages"] == len(kept)
        assert [t.decode() for t in example["passage_texts"][:len(kept)]] == [p["text"] for p in kept]


def test_decoded_features_read_back_as_the_source_record(fid_dir, demo):
    vocabulary = vocab.get_vocabulary(str(demo["vocab"]))  # byte fallback: every character round-trips
    records = _records(1, lambda i: 2)
    records[0].update(question="東京の川はどこですか", target="Аргунь")
    fid_tasks.register_fid_task("test_fid_decode", fid_dir(records), "finetune", vocab_path=str(demo["vocab"]))
    example = _examples("test_fid_decode", {"query_tokens": 50, "passage_tokens": (K, 200), "targets": 50})[0]
    assert vocabulary.decode(example["query_tokens"].tolist()) == "question: 東京の川はどこですか"
    assert vocabulary.decode(example["targets"].tolist()) == "Аргунь"
    for slot, passage in enumerate(records[0]["passages"]):
        row = example["passage_tokens"][slot].tolist()
        length = np.count_nonzero(row)
        assert row[length - 1] == 1  # EOS-terminated
        assert vocabulary.decode(row[:length - 1]) == f"title: {passage['title']} context: {passage['text']}"
    assert not example["passage_tokens"][2].any()


def test_clr_pt_task_and_converter_give_the_stage1_batch(fid_dir, test_vocab):
    records = _records(4, lambda i: 2 + i % 3, english_question=lambda i, n: f"the {WORDS[i]} is _X_",
                       teacher_scores=lambda i, n: [10.0 * (i + 1) - j for j in range(n)])
    fid_tasks.register_fid_task("test_fid_clr_pt", fid_dir(records), "clr_pt", vocabulary=test_vocab)
    converter = feature_converters.FiDFeatureConverter(pack=False)
    batch = next(seqio.get_dataset("test_fid_clr_pt", STAGE1_LENGTHS, converter, dataset_split="train",
                                   shuffle=False, batch_size=4).as_numpy_iterator())
    assert {name: value.shape for name, value in batch.items()} == {
        "query_tokens": (4, LQ), "passage_tokens": (4, K, LP), "english_query_tokens": (4, LQ),
        "teacher_scores": (4, K), "decoder_input_tokens": (4, LA), "decoder_target_tokens": (4, LA),
        "decoder_loss_weights": (4, LA)}
    assert batch["teacher_scores"].dtype == np.float32
    # Rows come in file order within a shard; find each record's row by its (distinct) first teacher score.
    for record in records:
        row = [j for j in range(4) if batch["teacher_scores"][j][0] == record["teacher_scores"][0]][0]
        assert batch["teacher_scores"][row].tolist() == (record["teacher_scores"] + [0.0] * K)[:K]
        english = text_inputs.query_ids(test_vocab, record["english_question"], LQ)
        assert batch["english_query_tokens"][row].tolist() == english + [0] * (LQ - len(english))
        present = batch["passage_tokens"][row].any(axis=-1).tolist()
        assert present == [slot < len(record["passages"]) for slot in range(K)]
    targets = batch["decoder_target_tokens"]
    assert (batch["decoder_input_tokens"][:, 1:] == targets[:, :-1]).all()
    assert not batch["decoder_input_tokens"][:, 0].any()
    assert (batch["decoder_loss_weights"] == (targets > 0)).all()


def test_stage1_task_refuses_files_without_teacher_scores(fid_dir, test_vocab):
    path = fid_dir(_records(2, lambda i: 2))
    fid_tasks.register_fid_task("test_fid_clr_pt_bad", path, "clr_pt", vocabulary=test_vocab)
    with pytest.raises(UserError, match=r"lack \['english_question', 'teacher_scores'\], which this task needs"):
        _examples("test_fid_clr_pt_bad", STAGE1_LENGTHS)


def test_mlqa_pt_blanks_the_query_source_passage(fid_dir, test_vocab):
    records = _records(3, lambda i: 3, source_passage_id=lambda i, n: f"p{i}_{i}")
    fid_tasks.register_fid_task("test_fid_mlqa_pt", fid_dir(records), "mlqa_pt", vocabulary=test_vocab)
    for example in _examples("test_fid_mlqa_pt", LENGTHS):
        i = int(example["id"].decode()[1:])
        present = example["passage_tokens"].any(axis=-1).tolist()
        assert present == [slot != i for slot in range(K)]


def test_converter_rejects_lengths_without_the_passage_count():
    converter = feature_converters.FiDFeatureConverter()
    with pytest.raises(ValueError, match=r"must be \(num_passages, passage_length\)"):
        converter(None, {**LENGTHS, "passage_tokens": LP})
    with pytest.raises(ValueError, match="cannot be packed"):
        feature_converters.FiDFeatureConverter(pack=True)


def _evaluate(task_name, predict):
    evaluator = seqio.Evaluator(task_name, feature_converter=feature_converters.FiDFeatureConverter(pack=False),
                                eval_split="validation", sequence_length=LENGTHS, logger_cls=())

    def predict_fn(ds):
        return [(int(index), predict(features)) for index, features in ds.as_numpy_iterator()]

    metrics, _ = evaluator.evaluate(compute_metrics=True, predict_fn=predict_fn)
    return metrics.result()[task_name]


@pytest.mark.parametrize("kind, lang", [("xor_full_eval", "ja"), ("mkqa_eval", "de")])
def test_answer_eval_tasks_score_decoded_answers_against_all_answers(fid_dir, demo, kind, lang):
    records = _records(6, lambda i: 2, lang=lang)
    for record in records:
        record["target"] = ""  # eval files carry answers only; the task decodes towards answers[0]
    name = f"test_fid_{kind}"
    fid_tasks.register_fid_task(name, fid_dir(records), kind, vocab_path=str(demo["vocab"]))
    perfect = _evaluate(name, lambda features: features["decoder_target_tokens"].tolist())
    assert perfect["f1"] == pytest.approx(100.0 if kind == "mkqa_eval" else 100.0 / 7)  # official: sum over 7
    assert perfect[f"f1_{lang}"] == pytest.approx(100.0) and perfect[f"em_{lang}"] == pytest.approx(100.0)
    vocabulary = vocab.get_vocabulary(str(demo["vocab"]))
    wrong = _evaluate(name, lambda features: vocabulary.encode("zebra"))
    assert wrong[f"f1_{lang}"] == pytest.approx(0.0)


def test_xor_retrieve_eval_scores_the_attached_passages(fid_dir, test_vocab):
    # Passage 0 of every record contains its answer; records 0 and 1 keep only passages without it.
    records = _records(4, lambda i: 3, lang="ko")
    for record in records[:2]:
        record["passages"] = record["passages"][1:]
    fid_tasks.register_fid_task("test_fid_xor_retrieve", fid_dir(records), "xor_retrieve_eval",
                                vocabulary=test_vocab)
    result = _evaluate("test_fid_xor_retrieve", lambda features: [1])
    assert result["R@2kt"] == pytest.approx(50.0) and result["R@5kt_ko"] == pytest.approx(50.0)


def test_per_language_mixture_mixes_by_example_count(tmp_path, test_vocab):
    for lang, count in (("ja", 6), ("ko", 2)):
        fid_files.write_fid_examples(_records(count, lambda i: 1, lang=lang), str(tmp_path / lang), 1, num_passages=1)
    assert fid_tasks.fid_mixture.__name__ == "fid_mixture"
    mixture = fid_tasks.register_language_mixture("test_mix", str(tmp_path / "{lang}"), ["ja", "ko"], "finetune",
                                                  vocabulary=test_vocab)
    assert sorted(t.name for t in mixture.tasks) == ["test_mix_ja", "test_mix_ko"]
    assert [mixture.get_rate(t) for t in sorted(mixture.tasks, key=lambda t: t.name)] == [6, 2]
    with pytest.raises(UserError, match="must contain '{lang}'"):
        fid_tasks.register_language_mixture("test_mix", str(tmp_path / "ja"), ["ja"], "finetune", vocabulary=test_vocab)
    with pytest.raises(ValueError, match="unknown FiD task kind"):
        fid_tasks.register_fid_task("test_bad_kind", str(tmp_path / "ja"), "translate", vocabulary=test_vocab)
