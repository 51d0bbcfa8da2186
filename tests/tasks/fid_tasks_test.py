"""FiD tasks: every kind registers and yields correctly shaped, correctly tokenised features; metrics wiring."""

import io
import types

import numpy as np
import pytest
import seqio
import tensorflow as tf

from class_jax.runtime.errors import UserError
from class_jax.tasks import text_inputs
from class_jax.models import feature_converter as feature_converters
from class_jax.tasks import fid_files
from class_jax.tasks import fid_tasks
from class_jax.tasks import preprocessors
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


# ------------------------------------------------------------------------------ stage 1 with a neural teacher
# The student reads the demo vocabulary (mT5's special ids), the teacher a second SentencePiece model trained here
# on other text (like T5's English vocabulary next to mT5's): both fall back to bytes, so every text round-trips,
# and they give the same text different ids.
LQ_T, LP_T, LA_T = 10, 20, 6
TEACHER_LENGTHS = {"teacher_query_tokens": LQ_T, "teacher_passage_tokens": (K, LP_T), "teacher_targets": LA_T}
UNCUT_LENGTHS = {"query_tokens": 50, "passage_tokens": (K, 200), "targets": 50, "english_query_tokens": 50,
                 "teacher_scores": K, "teacher_query_tokens": 50, "teacher_passage_tokens": (K, 200),
                 "teacher_targets": 50}


@pytest.fixture(scope="module")
def teacher_vocab_path(tmp_path_factory) -> str:
    import sentencepiece as spm  # pylint: disable=import-outside-toplevel
    sentences = [f"question: the {w} is where title: {w} title context: {' '.join(WORDS)} {w}" for w in WORDS] * 20
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(sentences), model_writer=model, vocab_size=300,
                                   model_type="unigram", byte_fallback=True, pad_id=0, eos_id=1, unk_id=2,
                                   bos_id=-1, num_threads=1, minloglevel=2, hard_vocab_limit=False)
    path = tmp_path_factory.mktemp("teacher_vocab") / "teacher.model"
    path.write_bytes(model.getvalue())
    return str(path)


def _teacher_records(count: int, passages_per_record, **extra_fields) -> list[dict]:
    """CLR-PT records as the release has them: an English cloze and no teacher scores."""
    return _records(count, passages_per_record,
                    english_question=lambda i, n: f"the {WORDS[i % 8]} of river {i} is _X_", **extra_fields)


def test_teacher_features_read_the_student_texts_in_the_teacher_vocabulary(fid_dir, demo, teacher_vocab_path):
    student, teacher = vocab.get_vocabulary(str(demo["vocab"])), vocab.get_vocabulary(teacher_vocab_path)
    records = _teacher_records(3, lambda i: 1 + i)  # 1..3 passages in k = 4 slots; the task keeps K = 3
    fid_tasks.register_fid_task("test_fid_clr_pt_teacher", fid_dir(records), "clr_pt", vocabulary=student,
                                teacher_vocab_path=teacher_vocab_path)
    task = seqio.get_mixture_or_task("test_fid_clr_pt_teacher")
    assert {name: (f.vocabulary, f.add_eos, f.rank) for name, f in task.output_features.items()
            if name.startswith("teacher_") and name != "teacher_scores"} == {
        "teacher_query_tokens": (teacher, False, 1), "teacher_passage_tokens": (teacher, False, 2),
        "teacher_targets": (teacher, True, 1)}
    examples = _by_id(_examples("test_fid_clr_pt_teacher", UNCUT_LENGTHS))
    assert len(examples) == 3
    for record in records:
        example = examples[record["id"]]
        english = f"question: {record['english_question']}"
        assert student.decode(example["english_query_tokens"].tolist()) == english
        assert teacher.decode(example["teacher_query_tokens"].tolist()) == english
        assert example["teacher_query_tokens"].tolist() != example["english_query_tokens"].tolist()  # other ids
        assert student.decode(example["targets"].tolist()) == teacher.decode(example["teacher_targets"].tolist()) \
            == record["target"]
        assert example["teacher_targets"][-1] == teacher.eos_id
        assert example["teacher_passage_tokens"].shape == (K, 200)
        for slot in range(K):
            student_row = example["passage_tokens"][slot].tolist()
            teacher_row = example["teacher_passage_tokens"][slot].tolist()
            if slot >= len(record["passages"]):  # the same empty slots
                assert not any(student_row) and not any(teacher_row)
                continue
            student_row, teacher_row = student_row[:np.count_nonzero(student_row)], \
                teacher_row[:np.count_nonzero(teacher_row)]
            assert teacher_row[-1] == teacher.eos_id and student_row[-1] == student.eos_id
            passage = record["passages"][slot]
            assert student.decode(student_row[:-1]) == teacher.decode(teacher_row[:-1]) == \
                f"title: {passage['title']} context: {passage['text']}"
        assert example["teacher_scores"].tolist() == [0.0] * K  # no scores in the files: zeros, same layout


def test_teacher_query_is_normalised_as_the_english_query(fid_dir, demo, teacher_vocab_path):
    student, teacher = vocab.get_vocabulary(str(demo["vocab"])), vocab.get_vocabulary(teacher_vocab_path)
    records = _teacher_records(1, lambda i: 1)
    records[0].update(question="\u201cwhere\u201d is it \u2014 here", english_question="the \u201criver\u201d \u2014 _X_")
    fid_tasks.register_fid_task("test_fid_clr_pt_teacher_norm", fid_dir(records), "clr_pt", vocabulary=student,
                                teacher_vocabulary=teacher, normalize_queries=True)
    example = _examples("test_fid_clr_pt_teacher_norm", UNCUT_LENGTHS)[0]
    assert example["query_tokens"].tolist() == text_inputs.query_ids(student, records[0]["question"], 50,
                                                                      normalize=True)
    english = records[0]["english_question"]
    assert example["english_query_tokens"].tolist() == text_inputs.query_ids(student, english, 50)
    assert example["teacher_query_tokens"].tolist() == text_inputs.query_ids(teacher, english, 50)


def test_records_without_teacher_scores_need_a_teacher_vocabulary(fid_dir, test_vocab, teacher_vocab_path):
    path = fid_dir(_teacher_records(2, lambda i: 2))
    fid_tasks.register_fid_task("test_fid_clr_pt_bm25", path, "clr_pt", vocabulary=test_vocab)
    with pytest.raises(UserError, match=r"lack \['teacher_scores'\], which this task needs"):
        _examples("test_fid_clr_pt_bm25", STAGE1_LENGTHS)
    fid_tasks.register_fid_task("test_fid_clr_pt_neural", path, "clr_pt", vocabulary=test_vocab,
                                teacher_vocab_path=teacher_vocab_path)
    assert len(_examples("test_fid_clr_pt_neural", {**STAGE1_LENGTHS, **TEACHER_LENGTHS})) == 2
    # The English cloze stays required: the teacher reads it.
    fid_tasks.register_fid_task("test_fid_clr_pt_neural_bad", fid_dir(_records(2, lambda i: 2), "plain"), "clr_pt",
                                vocabulary=test_vocab, teacher_vocab_path=teacher_vocab_path)
    with pytest.raises(UserError, match=r"lack \['english_question'\], which this task needs"):
        _examples("test_fid_clr_pt_neural_bad", {**STAGE1_LENGTHS, **TEACHER_LENGTHS})


def test_a_teacher_vocabulary_is_for_clr_pt_only(tmp_path, test_vocab, teacher_vocab_path):
    with pytest.raises(UserError, match=r"^FiD task 'test_teacher_qa': a teacher vocabulary \(teacher_vocab_path\) "
                                        r"applies to kind 'clr_pt' only, not 'finetune'$"):
        fid_tasks.register_fid_task("test_teacher_qa", str(tmp_path), "finetune", vocabulary=test_vocab,
                                    teacher_vocab_path=teacher_vocab_path)
    with pytest.raises(UserError, match="FiD mixture 'test_teacher_mix': .* not 'mlqa_pt'"):
        fid_tasks.fid_mixture("test_teacher_mix", str(tmp_path / "{lang}"), ["ja"], "mlqa_pt",
                              vocab_path=teacher_vocab_path, teacher_vocab_path=teacher_vocab_path)
    with pytest.raises(UserError, match="no such SentencePiece model"):
        fid_tasks.fid_task("test_teacher_missing", str(tmp_path), "clr_pt", vocab_path=teacher_vocab_path,
                           teacher_vocab_path=str(tmp_path / "missing.model"))


def test_gin_functions_register_teacher_features(tmp_path, demo, teacher_vocab_path):
    fid_files.write_fid_examples(_teacher_records(2, lambda i: 1, lang="ko"), str(tmp_path / "ko"), 1,
                                 num_passages=1)
    assert fid_tasks.fid_mixture("test_teacher_gin", str(tmp_path / "{lang}"), ["ko"], "clr_pt",
                                 vocab_path=str(demo["vocab"]), teacher_vocab_path=teacher_vocab_path) == \
        "test_teacher_gin"
    task = seqio.get_mixture_or_task("test_teacher_gin_ko")
    assert task.output_features["teacher_targets"].vocabulary is vocab.get_vocabulary(teacher_vocab_path)
    assert fid_tasks.fid_task("test_teacher_gin_task", str(tmp_path / "ko"), "clr_pt", vocab_path=str(demo["vocab"]),
                              teacher_vocab_path=teacher_vocab_path) == "test_teacher_gin_task"
    lengths = {**STAGE1_LENGTHS, "passage_tokens": (1, LP), "teacher_scores": 1, **TEACHER_LENGTHS,
               "teacher_passage_tokens": (1, LP_T)}
    assert len(_examples("test_teacher_gin_task", lengths)) == 2
    # Without one, nothing changes: no teacher features.
    fid_tasks.fid_task("test_teacher_gin_none", str(tmp_path / "ko"), "clr_pt", vocab_path=str(demo["vocab"]))
    assert not any(name.startswith("teacher_") and name != "teacher_scores"
                   for name in seqio.get_mixture_or_task("test_teacher_gin_none").output_features)


def test_converter_gives_the_teacher_batch_cut_and_padded(fid_dir, demo, teacher_vocab_path):
    student, teacher = vocab.get_vocabulary(str(demo["vocab"])), vocab.get_vocabulary(teacher_vocab_path)
    records = _teacher_records(4, lambda i: i + 1)  # 1..4 passages in k = 4 slots; K = 3 kept
    fid_tasks.register_fid_task("test_fid_clr_pt_teacher_batch", fid_dir(records), "clr_pt", vocabulary=student,
                                teacher_vocabulary=teacher)
    lengths = {**STAGE1_LENGTHS, **TEACHER_LENGTHS}
    converter = feature_converters.FiDFeatureConverter(pack=False)  # the model's; it delegates to stage 1's
    batch = next(seqio.get_dataset("test_fid_clr_pt_teacher_batch", lengths, converter, dataset_split="train",
                                   shuffle=False, batch_size=4).as_numpy_iterator())
    assert {name: (value.shape, value.dtype) for name, value in batch.items() if name.startswith("teacher_")} == {
        "teacher_query_tokens": ((4, LQ_T), np.int32), "teacher_passage_tokens": ((4, K, LP_T), np.int32),
        "teacher_decoder_input_tokens": ((4, LA_T), np.int32), "teacher_scores": ((4, K), np.float32)}
    assert "teacher_targets" not in batch
    by_target = {tuple(row): index for index, row in enumerate(batch["decoder_target_tokens"].tolist())}
    for record in records:  # rows come in file order within a shard; find each record's by its (distinct) answer
        row = by_target[tuple(_padded(list(student.encode(record["target"]))[:LA - 1] + [student.eos_id], LA))]
        assert batch["teacher_query_tokens"][row].tolist() == _padded(
            text_inputs.query_ids(teacher, record["english_question"], LQ_T), LQ_T)
        kept = record["passages"][:K]
        for slot in range(K):
            expected = (text_inputs.passage_ids(teacher, kept[slot]["title"], kept[slot]["text"], LP_T)
                        if slot < len(kept) else [])
            assert batch["teacher_passage_tokens"][row][slot].tolist() == _padded(expected, LP_T)
        assert batch["teacher_passage_tokens"][row].any(axis=-1).tolist() == \
            batch["passage_tokens"][row].any(axis=-1).tolist()
        target = list(teacher.encode(record["target"]))[:LA_T - 1] + [teacher.eos_id]
        assert batch["teacher_decoder_input_tokens"][row].tolist() == _padded([0] + target, LA_T + 1)[:LA_T]
    model_lengths = converter.get_model_feature_lengths(lengths)
    assert {name: model_lengths[name] for name in model_lengths if name.startswith("teacher_")} == {
        "teacher_query_tokens": LQ_T, "teacher_passage_tokens": LP_T, "teacher_decoder_input_tokens": LA_T,
        "teacher_scores": K}
    assert model_lengths["english_query_tokens"] == LQ  # the plain FiD converter answers for stage 1 too


def _padded(ids, length):
    return list(ids) + [0] * (length - len(ids))


@pytest.mark.parametrize("lengths, message", [
    ({**STAGE1_LENGTHS, "teacher_query_tokens": LQ_T},
     r"give \['teacher_query_tokens'\] but not \['teacher_passage_tokens', 'teacher_targets'\]"),
    ({**STAGE1_LENGTHS, **TEACHER_LENGTHS, "teacher_passage_tokens": (K + 1, LP_T)},
     r"\['teacher_passage_tokens'\] has 4 passages but 'passage_tokens' 3"),
    ({**STAGE1_LENGTHS, **TEACHER_LENGTHS, "teacher_passage_tokens": LP_T},
     r"\['teacher_passage_tokens'\] must be \(num_passages, passage_length\)"),
])
def test_converter_refuses_malformed_teacher_lengths(lengths, message):
    for converter in (feature_converters.FiDFeatureConverter(), feature_converters.ClrPtFeatureConverter()):
        with pytest.raises(ValueError, match=message):
            converter(None, lengths)
        with pytest.raises(ValueError, match=message):
            converter.get_model_feature_lengths(lengths)


def test_stage1_converter_without_teacher_lengths_is_unchanged(fid_dir, test_vocab):
    records = _records(2, lambda i: 2, english_question=lambda i, n: "the cat is _X_",
                       teacher_scores=lambda i, n: [1.0] * n)
    fid_tasks.register_fid_task("test_fid_clr_pt_reuse", fid_dir(records), "clr_pt", vocabulary=test_vocab,
                                teacher_vocabulary=test_vocab)
    converter = feature_converters.ClrPtFeatureConverter()
    task = seqio.get_mixture_or_task("test_fid_clr_pt_reuse")
    with_teacher = converter(task.get_dataset({**STAGE1_LENGTHS, **TEACHER_LENGTHS}, shuffle=False),
                             {**STAGE1_LENGTHS, **TEACHER_LENGTHS})
    assert "teacher_decoder_input_tokens" in with_teacher.element_spec
    # The same instance, then lengths without the teacher: the task's extra features are passed over.
    without = converter(task.get_dataset(STAGE1_LENGTHS, shuffle=False), STAGE1_LENGTHS)
    assert sorted(without.element_spec) == sorted(feature_converters.ClrPtFeatureConverter.MODEL_FEATURES)
    assert "teacher_query_tokens" not in feature_converters.ClrPtFeatureConverter.TASK_FEATURES


def test_fid_inputs_refuses_teacher_inputs_it_cannot_build(test_vocab):
    features = fid_tasks.fid_output_features(test_vocab, stage1=True)
    dataset = tf.data.Dataset.from_tensors({"question": "q"})
    with pytest.raises(ValueError, match="needs with_english_query"):
        preprocessors.fid_inputs(dataset, features, with_teacher_inputs=True)
    with pytest.raises(ValueError, match="no output features .*'teacher_query_tokens'"):
        preprocessors.fid_inputs(dataset, features, with_english_query=True, with_teacher_inputs=True)
    features = fid_tasks.fid_output_features(test_vocab, stage1=True, teacher_vocabulary=test_vocab)
    with pytest.raises(ValueError, match="'teacher_passage_tokens' has 2 passages, 'passage_tokens' 3"):
        preprocessors.fid_inputs(dataset, features, {**LENGTHS, "teacher_passage_tokens": (2, LP)},
                                 with_english_query=True, with_teacher_inputs=True)


def test_memory_estimate_sizes_the_teacher_features():
    from class_jax.trainer import memory_estimate  # pylint: disable=import-outside-toplevel
    model = types.SimpleNamespace(FEATURE_CONVERTER_CLS=feature_converters.FiDFeatureConverter)
    config = types.SimpleNamespace(task_feature_lengths={**STAGE1_LENGTHS, **TEACHER_LENGTHS}, batch_size=8,
                                   module=None, pack=False)
    spec = memory_estimate.input_spec_from_dataset_config(model, config)
    assert spec["teacher_query_tokens"] == ((8, LQ_T), np.int32)
    assert spec["teacher_passage_tokens"] == ((8, K, LP_T), np.int32)
    assert spec["teacher_decoder_input_tokens"] == ((8, LA_T), np.int32)
    assert spec["passage_tokens"] == ((8, K, LP), np.int32) and spec["english_query_tokens"] == ((8, LQ), np.int32)
    assert spec["teacher_scores"] == ((8, K), np.float32)

