"""Training data: SeqIO datasets (T5X-style DatasetConfig) or plain Python iterators, sharded per host, resumable.

Resuming exactly. A data source is a deterministic function of (host shard, number of batches to skip): the SeqIO
pipeline is built with a fixed shuffle seed (and seeded preprocessors), so batch n of a run is always the same
batch, and resuming at step s rebuilds the pipeline and skips the batches already consumed. The checkpoint stores
only that position (see `DataPosition`), not tf.data's internal buffers: it is tiny, backend-agnostic, survives
changes of host count that keep the global batch, and costs a skip over consumed batches on restart (it reads and
preprocesses them again, minutes for very long runs; tf.data iterator checkpointing would avoid that but ties the
checkpoint to one host layout and stores shuffle buffers per host).
"""

import dataclasses
import importlib
import itertools
from typing import Any, Callable, Iterator, Mapping, Optional, Protocol

import numpy as np

from class_jax.models.base import BaseModel
from class_jax.runtime import config_checks
from class_jax.runtime.errors import UserError
from class_jax.runtime.partitioning import HostBatchShard

Batch = dict[str, np.ndarray]


class DataSource(Protocol):
    """Where training batches come from.

    Attributes:
      global_batch_size: rows per step over all hosts.
    """

    global_batch_size: int

    def make_iterator(self, shard: HostBatchShard, skip_batches: int) -> Iterator[Batch]:
        """A fresh iterator over this host's rows of batches `skip_batches`, `skip_batches + 1`, ..."""


@dataclasses.dataclass(frozen=True)
class DataPosition:
    """Where the training data stands; saved with every checkpoint.

    Attributes:
      source_start_step: the step at which the current data source delivered its first batch (0, or the step at
        which a hook switched the data).
      batches_consumed: batches taken from the current source so far.
    """

    source_start_step: int = 0
    batches_consumed: int = 0

    def to_json(self) -> dict[str, int]:
        """The position as stored in a checkpoint's train_meta."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "DataPosition":
        """Reads `to_json`'s output."""
        return cls(source_start_step=int(data["source_start_step"]), batches_consumed=int(data["batches_consumed"]))


@dataclasses.dataclass(frozen=True)
class DatasetConfig:
    """A SeqIO dataset, T5X's `utils.DatasetConfig` trimmed to what class_jax uses.

    Attributes:
      mixture_or_task_name: a registered SeqIO task or mixture.
      task_feature_lengths: task feature -> maximum length (e.g. {"query_tokens": 50, ...}).
      split: dataset split.
      batch_size: GLOBAL batch size (rows per step over all hosts).
      shuffle: shuffle the examples (training).
      seed: shuffle / preprocessing seed; fixed seeds make the pipeline deterministic and resumable.
      use_cached: read the task's offline cache.
      pack: let the feature converter pack examples.
      num_epochs: passes over the data; None repeats forever (training).
      module: a module to import first, registering the tasks (e.g. "class_jax.tasks").
    """

    mixture_or_task_name: str
    task_feature_lengths: Mapping[str, int]
    split: str
    batch_size: int
    shuffle: bool = True
    seed: Optional[int] = 42
    use_cached: bool = False
    pack: bool = False
    num_epochs: Optional[int] = None
    module: Optional[str] = None

    def __post_init__(self):
        """Refuses a batch size, seed or epoch count of the wrong type or range (naming the gin parameter).

        Raises:
          config_checks.InvalidValue: naming the parameter and its allowed range.
        """
        config_checks.integer(self.batch_size, DatasetConfig, "batch_size", minimum=1)
        config_checks.integer(self.seed, DatasetConfig, "seed", minimum=0, allow_none=True)
        config_checks.integer(self.num_epochs, DatasetConfig, "num_epochs", minimum=1, allow_none=True)


def feature_converter_for(model: BaseModel, pack: bool = False) -> Any:
    """The model's SeqIO feature converter, named by its `FEATURE_CONVERTER_CLS` (as in T5X).

    Raises:
      ValueError: if the model names none.
    """
    converter_cls = getattr(model, "FEATURE_CONVERTER_CLS", None)
    if converter_cls is None:
        raise ValueError(f"{type(model).__name__} has no FEATURE_CONVERTER_CLS; SeqIO datasets need one")
    return converter_cls(pack=pack)


class SeqioDataSource:
    """A DatasetConfig bound to the model's feature converter."""

    def __init__(self, config: DatasetConfig, feature_converter: Any):
        self.config = config
        self.feature_converter = feature_converter
        self.global_batch_size = config.batch_size

    def dataset(self, shard: HostBatchShard, skip_batches: int = 0) -> Any:
        """The tf.data.Dataset of this host's batches, positioned after `skip_batches` batches."""
        import seqio  # pylint: disable=import-outside-toplevel  (keeps TensorFlow out of non-SeqIO runs)
        if self.config.module:
            importlib.import_module(self.config.module)
        ds = seqio.get_dataset(
            self.config.mixture_or_task_name,
            task_feature_lengths=dict(self.config.task_feature_lengths),
            feature_converter=self.feature_converter,
            dataset_split=self.config.split,
            use_cached=self.config.use_cached,
            shuffle=self.config.shuffle,
            num_epochs=self.config.num_epochs,
            shard_info=seqio.ShardInfo(index=shard.index, num_shards=shard.num_shards),
            seed=self.config.seed,
            batch_size=shard.local_batch_size,
        )
        return ds.skip(skip_batches).prefetch(2) if skip_batches else ds.prefetch(2)

    def make_iterator(self, shard: HostBatchShard, skip_batches: int) -> Iterator[Batch]:
        """Numpy batches of `dataset(shard, skip_batches)`."""
        return self.dataset(shard, skip_batches).as_numpy_iterator()


class IteratorDataSource:
    """Batches from a Python function, for tests and custom pipelines.

    `make_host_iterator(shard)` must return this host's rows of global batches 0, 1, 2, ... deterministically;
    positioning skips by consuming.
    """

    def __init__(self, make_host_iterator: Callable[[HostBatchShard], Iterator[Batch]], global_batch_size: int):
        self.make_host_iterator = make_host_iterator
        self.global_batch_size = config_checks.integer(global_batch_size, IteratorDataSource, "global_batch_size",
                                                       minimum=1)

    def make_iterator(self, shard: HostBatchShard, skip_batches: int) -> Iterator[Batch]:
        """The function's iterator, after consuming `skip_batches` batches."""
        iterator = self.make_host_iterator(shard)
        return itertools.islice(iterator, skip_batches, None)


def as_data_source(config_or_source: DatasetConfig | DataSource, model: BaseModel) -> DataSource:
    """A DataSource from a DatasetConfig (SeqIO, with the model's feature converter) or an existing source."""
    if isinstance(config_or_source, DatasetConfig):
        if config_or_source.module:  # it registers the tasks and may register the model's feature converter
            importlib.import_module(config_or_source.module)
        return SeqioDataSource(config_or_source, feature_converter_for(model, config_or_source.pack))
    if not hasattr(config_or_source, "make_iterator"):
        raise TypeError(f"expected a DatasetConfig or a DataSource, got {type(config_or_source).__name__}")
    return config_or_source


def _is_data_loss(error: BaseException) -> bool:
    """Whether tf.data failed on damaged bytes (a TFRecord's CRC or length check: a corrupt or truncated file)."""
    return type(error).__name__ == "DataLossError" and type(error).__module__.startswith("tensorflow")


def damaged_tfrecord_files(source: DataSource) -> list[str]:
    """The TFRecord files of a SeqIO source that do not read back completely (each is read through once).

    Args:
      source: a data source; only a SeqioDataSource's task sources that list their shards are checked.

    Returns:
      The damaged files (empty when none is found or the source lists no files).
    """
    if not isinstance(source, SeqioDataSource):
        return []
    import seqio  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    found = seqio.get_mixture_or_task(source.config.mixture_or_task_name)
    tasks = found.tasks if isinstance(found, seqio.Mixture) else [found]
    damaged = []
    for task in tasks:
        try:
            paths = list(task.source.list_shards(source.config.split))
        except Exception:  # pylint: disable=broad-except  (a source that cannot list shards)
            continue
        for path in paths:
            try:
                tf.data.TFRecordDataset(path).reduce(np.int64(0), lambda count, _: count + 1)
            except (tf.errors.DataLossError, tf.errors.NotFoundError):
                damaged.append(str(path))
    return damaged


def damaged_data_error(source: DataSource, error: BaseException) -> UserError:
    """A one-line UserError for a DataLossError of the training data, naming the damaged TFRecord file(s)."""
    detail = (str(error).strip().splitlines() or [type(error).__name__])[0]
    damaged = damaged_tfrecord_files(source)
    if damaged:
        return UserError(f"training data: {', '.join(damaged)}: the TFRecord file is corrupt or truncated ({detail}); "
                         f"rebuild or remove it")
    name = getattr(getattr(source, "config", None), "mixture_or_task_name", type(source).__name__)
    return UserError(f"training data {name}: a file is corrupt or truncated ({detail})")


def peek_batch_spec(source: DataSource, shard: HostBatchShard) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Feature -> (GLOBAL shape, dtype) of the source's batches, read from a throwaway iterator's first batch."""
    try:
        first = next(iter(source.make_iterator(shard, 0)))
    except Exception as e:  # pylint: disable=broad-except  (TensorFlow's DataLossError, without importing TF)
        if not _is_data_loss(e):
            raise
        raise damaged_data_error(source, e) from None
    spec = {}
    for name, value in first.items():
        value = np.asarray(value)
        if value.shape[0] != shard.local_batch_size:
            raise ValueError(f"feature {name!r} has {value.shape[0]} rows; this host feeds "
                             f"{shard.local_batch_size} of a global batch of {shard.global_batch_size}")
        spec[name] = ((shard.global_batch_size,) + value.shape[1:], value.dtype)
    return spec


class DataFeed:
    """This host's stream of training batches and its position, across data switches (see hooks.DataSwitch).

    The iterator is built lazily at the recorded position, so a feed restored from a checkpoint, or switched to a
    new source mid-run, starts exactly at the batch the uninterrupted run would read next.
    """

    def __init__(self, source: DataSource, shard: HostBatchShard, position: DataPosition = DataPosition()):
        self.source = source
        self.shard = shard
        self.position = position
        self._iterator: Optional[Iterator[Batch]] = None

    def switch(self, source: DataSource, start_step: int, step: int) -> None:
        """Reads `source` from now on; its batch 0 belonged to step `start_step` (<= `step`, the current step).

        Raises:
          ValueError: the new source has another global batch size.
        """
        if source.global_batch_size != self.source.global_batch_size:
            raise ValueError(f"data switched to a global batch of {source.global_batch_size}, training uses "
                             f"{self.source.global_batch_size}")
        self.source = source
        self.position = DataPosition(source_start_step=start_step, batches_consumed=step - start_step)
        self._iterator = None

    def next_batch(self) -> Batch:
        """This host's rows of the next batch.

        Raises:
          ValueError: the source ran out (finite datasets must repeat for training).
          UserError: a TFRecord file of the source is corrupt or truncated (naming it, see `damaged_data_error`).
        """
        if self._iterator is None:
            self._iterator = self.source.make_iterator(self.shard, self.position.batches_consumed)
        try:
            batch = next(self._iterator)
        except StopIteration:
            raise ValueError(f"training data ran out after {self.position.batches_consumed} batches of its source "
                             f"(started at step {self.position.source_start_step}); use num_epochs=None to repeat "
                             f"it") from None
        except Exception as e:  # pylint: disable=broad-except  (TensorFlow's DataLossError, without importing TF)
            if not _is_data_loss(e):
                raise
            raise damaged_data_error(self.source, e) from None
        self.position = dataclasses.replace(self.position, batches_consumed=self.position.batches_consumed + 1)
        return batch
