"""A corrupt or truncated TFRecord shard is a one-line UserError naming the file and record, not a DataLossError."""

import pytest

from class_jax.mining import dataset_io
from class_jax.runtime.errors import UserError

tf = pytest.importorskip("tensorflow")


def _write_shard(path) -> bytes:
    with tf.io.TFRecordWriter(str(path)) as writer:
        for index in range(20):
            example = tf.train.Example(features=tf.train.Features(feature={
                "id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[f"q{index}".encode()]))}))
            writer.write(example.SerializeToString())
    return path.read_bytes()


@pytest.mark.parametrize("damage", ["corrupt", "truncated"])
def test_bad_tfrecord_names_the_file(tmp_path, damage):
    path = tmp_path / "shard-00000.tfrecord"
    data = bytearray(_write_shard(path))
    assert len(dataset_io.read_tfrecord_examples(str(path))) == 20
    if damage == "corrupt":
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    else:
        path.write_bytes(bytes(data[: len(data) // 2]))
    expected = r"shard-00000\.tfrecord: record \d+: (unreadable TFRecord|the file is truncated)"
    with pytest.raises(UserError, match=expected) as error:
        dataset_io.read_tfrecord_examples(str(path))
    assert "\n" not in str(error.value)
