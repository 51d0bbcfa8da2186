"""Benchmark: the host-side FiD input pipeline — class_jax's SeqIO task vs the authors' PyTorch FiD collate.

A FiD training step reads, per query, its question and k passages as text and tokenises all of them: at the paper's
CLR-PT shapes (64 queries x 100 passages x 200 tokens) that is 6,400 passages per step, on the host, while the
accelerators run the previous step. This measures whether the host keeps up.

  * class_jax: FiD example files (tf.train.Example shards, tasks/fid_files.py) -> the registered FiD task
    (SentencePiece in TensorFlow, tasks/preprocessors.py) -> the CLASS feature converter -> batches, read through
    `trainer.data.SeqioDataSource.make_iterator`, the iterator the trainer's `DataFeed` reads (tf.data AUTOTUNE
    parallelism, prefetch 2).
  * peer: the released CLASS / FiD PyTorch data path: the records held in memory (FiD loads its JSON file whole;
    reading it is not timed), a `torch.utils.data.DataLoader` with `--workers` worker processes whose collate
    function formats the same strings and tokenises them with HF's tokenizer built from the same SentencePiece model
    (`T5Tokenizer.from_pretrained`, truncation, padding to max_length), as FiD's `Collator` does.
Both sides produce the same token ids: "token_agreement" in the JSON is the fraction of identical token rows
(queries, passages, answers) in one unshuffled batch. It is 1.0 with mT5's vocabulary; the demo's SentencePiece
model spells characters it lacks as UTF-8 bytes (byte fallback), which HF's converted tokenizer maps to <unk>, so a
few rows with rare characters differ there.

"feeding" then reads the trainer's own `DataFeed` in a loop that holds each batch for a simulated accelerator step
of `--step_seconds` (a sleep, which leaves the host's cores free as a device step does): the achieved seconds per
step equal the target when the prefetching pipeline hides its work behind the step.

Default data: the demo wiki (`class-jax demo`'s generator, 7 languages) ingested, a SentencePiece model trained on
it, and FiD records whose passages are about 100 words (the size of DPR's Wikipedia passages), built from its text.
`--fid_dir` and `--vocab` measure real files instead (e.g. mT5's `spiece.model` and a CLR-PT FiD directory).

  python bench/input_pipeline.py                              # CLR-PT shapes: 64 queries x 100 passages x 200
  python bench/input_pipeline.py --kind qa --batch 8 --passages 16 --step_seconds 0.3
  python bench/input_pipeline.py --fid_dir /data/clr_pt_fid/ja --vocab /models/mt5/spiece.model
"""

import argparse
import itertools
import os
import pathlib
import random
import shutil
import sys
import tempfile
import time
from typing import Any, Iterator

import numpy as np

import bench_utils

PASSAGE_WORDS = 100  # DPR's Wikipedia passages, which XOR-TyDi's corpora follow
DEMO_VOCAB_SIZE = 2000  # about the largest SentencePiece model the small demo corpus supports
WARMUP_STEPS = 2  # untimed feeding steps: the first builds the pipeline, the second lets it fill its buffer


def demo_inputs(workdir: pathlib.Path, num_examples: int, num_passages: int, seed: int = 0) -> tuple[str, str]:
    """Writes FiD examples (all CLR-PT fields) and a SentencePiece model from the demo wiki.

    Args:
      workdir: an empty folder.
      num_examples: FiD records.
      num_passages: k, passages per record.
      seed: sampling seed.

    Returns:
      (FiD directory, SentencePiece model path).
    """
    from class_jax.corpus import corpus_io
    from class_jax.demo.world import wiki as demo_wiki
    from class_jax.tasks import fid_files, vocab

    demo_wiki.make_demo_wiki(workdir / "wiki", size="small", seed=seed)
    demo_wiki.ingest_demo_wiki(workdir / "wiki", workdir / "corpus")
    vocab_path = vocab.train_demo_vocabulary(workdir / "corpus", workdir / "demo.model", DEMO_VOCAB_SIZE)
    passages = {lang: list(corpus_io.iter_passages(workdir / "corpus", lang))
                for lang in corpus_io.corpus_languages(workdir / "corpus")}
    rng = random.Random(seed)

    def sentence(lang: str) -> str:
        return " ".join(rng.choice(passages[lang]).text.split()[:12])

    def long_passage(index: int) -> fid_files.FiDPassage:
        words: list[str] = []
        while len(words) < PASSAGE_WORDS:
            words += rng.choice(passages["en"]).text.split()
        return fid_files.FiDPassage(id=f"en:{index}", title=rng.choice(passages["en"]).title,
                                    text=" ".join(words[:PASSAGE_WORDS]), score=rng.random())

    languages = sorted(lang for lang in passages if lang != "en")
    records = []
    for i in range(num_examples):
        lang = languages[i % len(languages)]
        attached = tuple(long_passage(i * num_passages + j) for j in range(num_passages))
        records.append(fid_files.FiDExample(
            id=f"q{i}", lang=lang, question=sentence(lang), answers=(), passages=attached,
            target=rng.choice(passages[lang]).title, english_question=sentence("en"),
            teacher_scores=tuple(rng.random() for _ in attached)))
    fid_dir = str(workdir / "fid")
    fid_files.write_fid_examples(records, fid_dir, num_shards=4, num_passages=num_passages)
    return fid_dir, str(vocab_path)


def task_lengths(kind: str, num_passages: int, query_len: int, passage_len: int,
                 answer_len: int) -> dict[str, Any]:
    """The trainer's `task_feature_lengths` for a FiD task of `kind` (stage 1 adds its two features)."""
    lengths: dict[str, Any] = {"query_tokens": query_len, "passage_tokens": (num_passages, passage_len),
                               "targets": answer_len}
    if kind == "clr_pt":
        lengths.update(english_query_tokens=query_len, teacher_scores=num_passages)
    return lengths


def single_host_shard(batch: int):
    """A one-process run's `HostBatchShard`: every row of each batch."""
    from class_jax.runtime.partitioning import HostBatchShard
    return HostBatchShard(index=0, num_shards=1, local_batch_size=batch, global_batch_size=batch)


def class_jax_source(fid_dir: str, vocab_path: str, kind: str, batch: int, lengths: dict[str, Any],
                     shuffle: bool = True):
    """The trainer's SeqIO data source over a FiD task registered on `fid_dir`."""
    from class_jax.models import feature_converter
    from class_jax.tasks import fid_tasks
    from class_jax.trainer import data

    name = "bench_input_pipeline"
    fid_tasks.register_fid_task(name, fid_dir, kind, vocab_path=vocab_path)
    config = data.DatasetConfig(mixture_or_task_name=name, task_feature_lengths=lengths, split="train",
                                batch_size=batch, shuffle=shuffle, seed=0)
    return data.SeqioDataSource(config, feature_converter.FiDFeatureConverter())


class FiDCollator:
    """The released FiD/CLASS collate function: the batch's strings tokenised by HF's tokenizer, padded tensors.

    Picklable (the DataLoader's worker processes each load the tokenizer once).
    """

    def __init__(self, tokenizer_dir: str, lengths: dict[str, Any], stage1: bool):
        self.tokenizer_dir = tokenizer_dir
        self.query_len = lengths["query_tokens"]
        self.num_passages, self.passage_len = lengths["passage_tokens"]
        self.answer_len = lengths["targets"]
        self.stage1 = stage1
        self._tokenizer = None

    def _encode(self, texts: list[str], length: int, eos: bool) -> Any:
        return self._tokenizer(texts, max_length=length, padding="max_length", truncation=True,
                               add_special_tokens=eos, return_tensors="pt")["input_ids"]

    def __call__(self, examples: list[Any]) -> dict[str, Any]:
        import torch
        if self._tokenizer is None:
            from transformers import T5Tokenizer
            self._tokenizer = T5Tokenizer.from_pretrained(self.tokenizer_dir, extra_ids=0)
        passages = []
        for example in examples:
            texts = [f"title: {p.title} context: {p.text}" for p in example.passages[:self.num_passages]]
            ids = self._encode(texts, self.passage_len, eos=True)
            passages.append(torch.nn.functional.pad(ids, (0, 0, 0, self.num_passages - ids.shape[0])))
        batch = {"query_tokens": self._encode([f"question: {e.question}" for e in examples], self.query_len, False),
                 "passage_tokens": torch.stack(passages),
                 "targets": self._encode([e.target for e in examples], self.answer_len, eos=True)}
        if self.stage1:
            batch["english_query_tokens"] = self._encode([f"question: {e.english_question}" for e in examples],
                                                         self.query_len, False)
            batch["teacher_scores"] = torch.tensor([list(e.teacher_scores[:self.num_passages]) for e in examples])
        return batch


def peer_loader(records: list[Any], tokenizer_dir: str, lengths: dict[str, Any], stage1: bool, batch: int,
                workers: int, shuffle: bool = True) -> Iterator[dict[str, Any]]:
    """An endless iterator over the peer's batches (a fresh DataLoader epoch after each pass).

    Raises:
      ValueError: fewer records than one batch.
    """
    import torch
    if len(records) < batch:
        raise ValueError(f"{len(records)} FiD records do not fill one batch of {batch}")
    # Workers are spawned, not forked: this process already runs JAX's and TensorFlow's threads.
    loader = torch.utils.data.DataLoader(records, batch_size=batch, shuffle=shuffle, drop_last=True,
                                         num_workers=workers, persistent_workers=workers > 0,
                                         multiprocessing_context="spawn" if workers else None,
                                         collate_fn=FiDCollator(tokenizer_dir, lengths, stage1))
    while True:
        yield from loader


def time_batches(iterator: Iterator[Any], batches: int) -> dict[str, float]:
    """Seconds for `batches` batches after the first (which starts workers and builds the pipeline)."""
    started = time.perf_counter()
    next(iterator)
    first = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    seconds = time.perf_counter() - started
    return {"first_batch_s": first, "seconds": seconds, "batch_s": seconds / batches}


def feeding(source: Any, batch: int, step_seconds: float, steps: int) -> dict[str, float]:
    """The trainer's `DataFeed` read by a loop that spends `step_seconds` per step away from the host's cores."""
    from class_jax.trainer import data

    feed = data.DataFeed(source, single_host_shard(batch))
    waits = []
    for step in range(WARMUP_STEPS + steps):
        if step == WARMUP_STEPS:  # the pipeline is built and its prefetch buffer filled, as after a compilation
            waits, started = [], time.perf_counter()
        waited = time.perf_counter()
        feed.next_batch()
        waits.append(time.perf_counter() - waited)
        time.sleep(step_seconds)
    achieved = (time.perf_counter() - started) / steps
    return {"step_seconds": step_seconds, "steps": steps, "achieved_step_s": achieved,
            "mean_wait_s": float(np.mean(waits)), "max_wait_s": float(np.max(waits))}


def token_agreement(fid_dir: str, vocab_path: str, tokenizer_dir: str, records: list[Any], kind: str, batch: int,
                    lengths: dict[str, Any]) -> float:
    """The fraction of token rows both sides give identically for the first `batch` records, unshuffled."""
    source = class_jax_source(fid_dir, vocab_path, kind, batch, lengths, shuffle=False)
    ours = next(source.make_iterator(single_host_shard(batch), 0))
    ours["targets"] = ours["decoder_target_tokens"]
    # Unshuffled, the FiD source interleaves its shards round-robin: records in written order, as `records` holds.
    theirs = next(peer_loader(records, tokenizer_dir, lengths, kind == "clr_pt", batch, 0, shuffle=False))
    names = ["query_tokens", "passage_tokens", "targets"] + (["english_query_tokens"] if kind == "clr_pt" else [])
    same = [(ours[name] == theirs[name].numpy()).all(axis=-1) for name in names]
    return float(np.concatenate([rows.ravel() for rows in same]).mean())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=["clr_pt", "qa"], default="clr_pt",
                        help="FiD task kind: stage 1 (with the English query and teacher scores) or QA")
    parser.add_argument("--batch", type=int, default=64, help="queries per batch (this host's rows)")
    parser.add_argument("--passages", type=int, default=100, help="k passages per query")
    parser.add_argument("--query_len", type=int, default=50)
    parser.add_argument("--passage_len", type=int, default=200)
    parser.add_argument("--answer_len", type=int, default=50)
    parser.add_argument("--examples", type=int, default=256,
                        help="FiD records generated, and the records the peer holds in memory (the data repeats)")
    parser.add_argument("--batches", type=int, default=6, help="timed batches per side (after one warm-up batch)")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="the peer's DataLoader workers")
    parser.add_argument("--step_seconds", type=float, default=None,
                        help="simulated accelerator step for the feeding test (default: 1.25x class_jax's batch "
                             "time, a step the pipeline should just hide); 0 skips it")
    parser.add_argument("--feeding_steps", type=int, default=6)
    parser.add_argument("--fid_dir", default=None, help="a FiD directory to read instead of generated records")
    parser.add_argument("--vocab", default=None, help="SentencePiece model for --fid_dir")
    parser.add_argument("--skip_hf", action="store_true", help="no PyTorch / HF tokenizer comparison")
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results" / "input_pipeline.json"))
    args = parser.parse_args(argv)
    if (args.fid_dir is None) != (args.vocab is None):
        parser.error("--fid_dir and --vocab go together")

    from class_jax.tasks import fid_files

    workdir = pathlib.Path(tempfile.mkdtemp(prefix="input_pipeline_"))
    try:
        fid_dir, vocab_path = args.fid_dir, args.vocab
        if fid_dir is None:
            bench_utils.progress(f"generating {args.examples} FiD records from the demo wiki")
            fid_dir, vocab_path = demo_inputs(workdir, args.examples, args.passages)
        lengths = task_lengths(args.kind, args.passages, args.query_len, args.passage_len, args.answer_len)
        source = class_jax_source(fid_dir, vocab_path, args.kind, args.batch, lengths)
        result: dict[str, Any] = {"kind": args.kind, "batch": args.batch, "lengths": lengths, "fid_dir": args.fid_dir,
                                  "vocab": args.vocab or "demo", **bench_utils.machine()}
        bench_utils.progress("timing the class_jax pipeline")
        result["class_jax"] = time_batches(source.make_iterator(single_host_shard(args.batch), 0),
                                           args.batches)
        rows = [["class_jax: FiD files -> SeqIO task -> feature converter (tf.data)", result["class_jax"]]]
        if not args.skip_hf:
            records = list(itertools.islice(fid_files.read_fid_examples(fid_dir), args.examples))
            tokenizer_dir = workdir / "tokenizer"
            tokenizer_dir.mkdir()
            shutil.copy(vocab_path, tokenizer_dir / "spiece.model")
            bench_utils.progress(f"timing the peer ({args.workers} DataLoader workers)")
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # as inside FiD's forked workers
            loader = peer_loader(records, str(tokenizer_dir), lengths, args.kind == "clr_pt", args.batch,
                                 args.workers)
            result["hf"] = time_batches(loader, args.batches)
            result["hf"]["workers"] = args.workers
            result["token_agreement"] = token_agreement(fid_dir, vocab_path, str(tokenizer_dir), records, args.kind,
                                                        args.batch, lengths)
            result["speedup_vs_hf"] = result["hf"]["batch_s"] / result["class_jax"]["batch_s"]
            rows.append([f"HF tokenizer in a torch DataLoader, {args.workers} workers (FiD's collate)", result["hf"]])
        step_seconds = 1.25 * result["class_jax"]["batch_s"] if args.step_seconds is None else args.step_seconds
        if step_seconds > 0:
            bench_utils.progress(f"feeding a simulated {step_seconds:.3f} s step")
            result["feeding"] = feeding(source, args.batch, step_seconds, args.feeding_steps)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    passages_per_batch = args.batch * args.passages
    table = []
    for (label, timing), ratio in zip(rows, [result.get("speedup_vs_hf"), 1.0]):
        timing["passages_per_s"] = passages_per_batch / timing["batch_s"]
        table.append([label, f"{timing['batch_s']:.3f}", f"{args.batch / timing['batch_s']:.1f}",
                      f"{timing['passages_per_s']:.0f}", f"{timing['passages_per_s'] / result['cpus']:.0f}",
                      "-" if ratio is None else f"{ratio:.2f}x"])
    print(f"\nFiD input pipeline, {args.kind}, {args.batch} queries x {args.passages} passages x {args.passage_len} "
          f"tokens, vocabulary {result['vocab']}, {result['cpus']} CPUs\n")
    print(bench_utils.markdown_table(["pipeline", "s / batch", "queries/s", "passages/s", "passages/s per CPU",
                                      "vs HF"], table))
    if "token_agreement" in result:
        print(f"\ntoken rows identical on both sides: {result['token_agreement']:.2%}")
    if "feeding" in result:
        fed = result["feeding"]
        print(f"feeding a {fed['step_seconds']:.3f} s step through the trainer's DataFeed: {fed['achieved_step_s']:.3f}"
              f" s per step achieved (mean wait for a batch {fed['mean_wait_s'] * 1e3:.1f} ms, max "
              f"{fed['max_wait_s'] * 1e3:.1f} ms)")
    print(f"\nwrote {bench_utils.write_json(args.out, result)}")
    return 0


if __name__ == "__main__":
    bench_utils.start_process()
    sys.exit(main())
