"""The demo's answer report: what the reader read of its passages, and F1 split by it."""

import json

import pytest
from seqio import test_utils

from class_jax.demo import systems


def test_answer_report_counts_only_answers_the_reader_read_and_splits_f1(tmp_path):
    vocabulary = test_utils.sentencepiece_vocab()  # seqio's small offline vocabulary
    filler = " ".join(["the old town is known for its narrow streets"] * 6)
    examples = [
        # The answer opens the passage: read.
        {"id": "q1", "lang": "de", "answers": ["Berlin"], "title": "Berlin", "text": "Berlin is a city."},
        # The answer is in the passage's text but after the 16 tokens the reader was given: not read.
        {"id": "q2", "lang": "de", "answers": ["Hamburg"], "title": "Town", "text": filler + " Hamburg"},
        {"id": "q3", "lang": "ja", "answers": ["Kyoto"], "title": "Kyoto", "text": "Kyoto is old."},
    ]
    predictions = {"q1": "Berlin", "q2": "Berlin", "q3": "Osaka"}
    records = []
    for e in examples:
        # k = 2 slots, the second empty (num_passages 1); seqio logs the token arrays only as summaries.
        records.append({"input": {"id": e["id"], "lang": e["lang"], "answers": e["answers"], "num_passages": 1,
                                  "passage_titles": [e["title"], ""], "passage_texts": [e["text"], ""],
                                  "passage_tokens": "ndarray(shape=(2, 16), dtype=int32); summary: ..."},
                        "prediction": predictions[e["id"]]})
    (tmp_path / "eval_xor_full--00001.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "eval_xor_full-metrics.jsonl").write_text("{}\n")
    results = {"f1": 33.3, "em": 33.3, "f1_de": 50.0, "em_de": 50.0, "f1_ja": 0.0, "em_ja": 0.0}

    report = systems.answer_report(results, tmp_path, ["de", "ja"], vocabulary, passage_length=16)

    assert report["per_language"]["de"] == {"f1": 50.0, "em": 50.0, "answer_in_passages": 50.0, "questions": 2}
    assert report["per_language"]["ja"]["answer_in_passages"] == 100.0
    assert report["answer_in_passages"] == 75.0  # macro over languages
    read, unread = report["copying"]["answer_readable"], report["copying"]["answer_not_readable"]
    assert read == {"f1": 50.0, "questions": 2}  # de 100 (q1), ja 0 (q3): macro over the languages present
    assert unread == {"f1": 0.0, "questions": 1}


def test_answer_report_without_inferences_names_the_folder(tmp_path):
    (tmp_path / "eval_xor_full-metrics.jsonl").write_text("{}\n")
    with pytest.raises(FileNotFoundError, match="no eval_xor_full"):
        systems.answer_report({"f1": 0.0, "em": 0.0}, tmp_path, ["de"], test_utils.sentencepiece_vocab(), 16)


def test_feature_lengths_are_the_ones_the_stage_1_run_trains_with(tmp_path):
    from class_jax.demo import pipeline, settings  # pylint: disable=import-outside-toplevel
    from class_jax.runtime import gin_utils  # pylint: disable=import-outside-toplevel
    demo = pipeline.DemoPipeline(tmp_path, settings.PRESETS["quick"])
    assert demo.lengths == {"NUM_PASSAGES": 4, "QUERY_LENGTH": 32, "PASSAGE_LENGTH": 64}  # gin/demo/common.gin
    assert not gin_utils.holds_config()

    # A binding of the train dataset's lengths themselves (no macro) changes what the demo reads.
    bindings = demo._stage_bindings("clr_pt") + [  # pylint: disable=protected-access
        "train/data.DatasetConfig.task_feature_lengths = {'query_tokens': 20, 'passage_tokens': (3, 48)}"]
    assert systems.demo_feature_lengths([pipeline.STAGE_GIN["clr_pt"]], bindings) == {
        "NUM_PASSAGES": 3, "QUERY_LENGTH": 20, "PASSAGE_LENGTH": 48}
    assert not gin_utils.holds_config()
