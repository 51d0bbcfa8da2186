"""FiD example files: round trip, padding, determinism, atomic writes, bad input, the SeqIO source."""

import hashlib
import json

import pytest
import seqio
import tensorflow as tf

from class_jax.runtime.errors import UserError
from class_jax.tasks import fid_files


def _record(i: int, num_passages: int, **extra) -> dict:
    return dict(id=f"q{i}", lang="ja", question=f"質問 {i}", answers=[f"answer {i}", "alias"], target=f"answer {i}",
                passages=[dict(id=f"en:{i}:{j}", title=f"Title {j}", text=f"text {i} {j}", score=10.0 - j)
                          for j in range(num_passages)], **extra)


def _digests(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_round_trip_keeps_order_fields_and_pads_to_k(tmp_path):
    records = [_record(i, i % 4, english_question=f"the _X_ {i}", teacher_scores=[0.5 * j for j in range(i % 4)])
               for i in range(9)]
    manifest = fid_files.write_fid_examples(records, str(tmp_path), 3, num_passages=5, metadata={"step": 7})
    assert manifest["num_examples"] == 9 and manifest["num_passages"] == 5
    assert [s["examples"] for s in manifest["shards"]] == [3, 3, 3]
    assert manifest["has"] == {"english_question": True, "teacher_scores": True, "source_passage_id": False,
                               "target": True}
    assert json.loads((tmp_path / fid_files.MANIFEST_NAME).read_text())["metadata"] == {"step": 7}
    back = list(fid_files.read_fid_examples(str(tmp_path)))
    assert back == [fid_files.example_from_record(r, "r") for r in records]
    assert back[2].passages[1] == fid_files.FiDPassage("en:2:1", "Title 1", "text 2 1", 9.0)
    assert back[0].passages == () and back[0].source_passage_id is None

    raw = next(fid_files.FiDFileDataSource({"train": str(tmp_path)}).get_dataset("train", shuffle=False)
               .as_numpy_iterator())
    assert raw["id"] == b"q0" and raw["num_passages"] == 0
    assert raw["passage_ids"].tolist() == [b""] * 5 and raw["passage_scores"].tolist() == [0.0] * 5


def test_writing_is_deterministic_and_refuses_to_replace_silently(tmp_path):
    records = [_record(i, 3) for i in range(6)]
    fid_files.write_fid_examples(records, str(tmp_path / "a"), 2, num_passages=3)
    fid_files.write_fid_examples(iter(records), str(tmp_path / "b"), 2, num_passages=3)
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")
    with pytest.raises(UserError, match="already holds FiD examples"):
        fid_files.write_fid_examples(records, str(tmp_path / "a"), 2, num_passages=3)
    fid_files.write_fid_examples(records[:2], str(tmp_path / "a"), 1, num_passages=3, overwrite=True)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted([fid_files.MANIFEST_NAME,
                                                                         "fid-00000-of-00001.tfrecord"])


def test_a_failed_write_leaves_no_complete_looking_directory(tmp_path):
    records = [_record(0, 2), {"id": "q1", "lang": "ja", "question": 3}]
    with pytest.raises(UserError, match=r"record 1 \(id 'q1'\): field 'question' must be a string"):
        fid_files.write_fid_examples(records, str(tmp_path), 2, num_passages=2)
    assert not (tmp_path / fid_files.MANIFEST_NAME).exists()
    with pytest.raises(UserError, match="not a complete FiD example directory"):
        fid_files.read_manifest(str(tmp_path))


@pytest.mark.parametrize("records, message", [
    ([_record(0, 4)], "4 passages do not fit the file's k = 3"),
    ([_record(0, 2, teacher_scores=[1.0])], "1 teacher_scores for 2 passages"),
    ([_record(0, 2, english_question="en"), _record(1, 2)], r"optional fields \['english_question'\] differ"),
    ([dict(_record(0, 1), answers="one")], "'answers' must be a list of strings"),
    ([dict(_record(0, 1), passages=[{"id": "p", "title": "t", "text": "x", "score": "high"}])],
     r"passages\[0\]: score: expected a number"),
])
def test_malformed_records_fail_naming_the_record(tmp_path, records, message):
    with pytest.raises(UserError, match=message):
        fid_files.write_fid_examples(records, str(tmp_path), 1, num_passages=3)


def test_missing_or_truncated_files_fail_at_load_with_the_path(tmp_path):
    fid_files.write_fid_examples([_record(i, 2) for i in range(4)], str(tmp_path / "ok"), 2, num_passages=2)
    source = fid_files.FiDFileDataSource({"train": str(tmp_path / "missing")})
    with pytest.raises(UserError, match=f"{tmp_path / 'missing'}: no such FiD example directory"):
        source.get_dataset("train")
    with pytest.raises(UserError, match="no FiD example directory matches"):
        fid_files.FiDFileDataSource({"train": str(tmp_path / "round-*")}).get_dataset("train")
    shard = tmp_path / "ok" / "fid-00001-of-00002.tfrecord"
    shard.write_bytes(shard.read_bytes()[:-5])
    with pytest.raises(UserError, match=f"{shard}: .* bytes, the manifest records"):
        fid_files.FiDFileDataSource({"train": str(tmp_path / "ok")}).get_dataset("train")
    (tmp_path / "ok" / fid_files.MANIFEST_NAME).write_text('{"format": "class_jax.fid_examples",\n "version": }')
    with pytest.raises(UserError, match="fid_manifest.json: line 2: not valid JSON"):
        fid_files.read_manifest(str(tmp_path / "ok"))


def test_source_reads_globs_and_shards_hosts_disjointly(tmp_path):
    for round_index in range(2):
        fid_files.write_fid_examples([_record(10 * round_index + i, 1) for i in range(5)],
                                     str(tmp_path / f"round-{round_index}"), 2, num_passages=1)
    source = fid_files.FiDFileDataSource({"train": str(tmp_path / "round-*")})
    assert source.num_input_examples("train") == 10 and len(source.list_shards("train")) == 4

    def ids(shard_info=None):
        ds = source.get_dataset("train", shuffle=False, shard_info=shard_info)
        return sorted(example["id"].decode() for example in ds.as_numpy_iterator())

    everything = ids()
    assert everything == sorted(f"q{i}" for i in [0, 1, 2, 3, 4, 10, 11, 12, 13, 14])
    for num_shards in (2, 3, 8):  # by files when there are enough of them, else by records
        parts = [ids(seqio.ShardInfo(index=i, num_shards=num_shards)) for i in range(num_shards)]
        assert sorted(sum(parts, [])) == everything
        assert all(part for part in parts[:min(num_shards, 4)])


def test_feature_description_matches_the_documented_features():
    spec = fid_files.feature_description()
    assert set(spec) == set(fid_files.FEATURES)
    assert spec["num_passages"].dtype == tf.int64 and spec["passage_scores"].dtype == tf.float32
