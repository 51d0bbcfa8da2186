"""`class-jax ask`: answer one question in any language with a checkpoint and its index.

    class-jax ask --checkpoint ckpt/ --index index/ [--vocab spiece.model] [--k 10] [--num_beams 4] [--json] \\
        "Wer schrieb Faust?"

The question is encoded by the retriever (the first B encoder layers), its top-k passages are searched in the
index (exact search on the devices), and the Fusion-in-Decoder reader decodes the answer from the k
(question, passage) pairs, greedily or with beam search. Prints the answer and the passages (rank, score, title,
first words); `--json` prints one JSON line instead.
"""

import argparse
import dataclasses
import json
import pathlib
from typing import Any, Sequence

import jax
import numpy as np

from class_jax.commands import common
from class_jax.checkpoints import params_io
from class_jax.runtime.errors import UserError
from class_jax.models.class_model import CLASSModel
from class_jax.retrieval import retrieve
from class_jax.tasks import text_inputs
from class_jax.retrieval.corpus_source import PassageRecord
from class_jax.retrieval.encoder import RetrievalEncoder
from class_jax.retrieval.index_reader import IndexReader


@dataclasses.dataclass(frozen=True)
class RetrievedPassage:
    """One passage the reader read."""

    rank: int
    id: str
    title: str
    text: str
    score: float


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the command's flags."""
    common.add_model_arguments(parser)
    parser.add_argument("question", help="the question, in any language")
    parser.add_argument("--index", required=True, help="index directory written by `class-jax index` with this "
                                                       "checkpoint")
    parser.add_argument("--k", type=int, default=10, help="passages retrieved and read")
    parser.add_argument("--num_beams", type=int, default=1, help="1: greedy decoding; more: beam search")
    parser.add_argument("--max_answer_length", type=int, default=50, help="answer tokens at most (EOS included)")
    parser.add_argument("--query_length", type=int, default=text_inputs.QUERY_MAX_LENGTH,
                        help="question tokens kept (the model's training length)")
    parser.add_argument("--corpus", default=None, help="corpus root, if it moved since indexing")
    parser.add_argument("--preview_words", type=int, default=12, help="words of each passage printed")
    parser.add_argument("--json", action="store_true", help="print one JSON line: question, answer, passages")


def _check_arguments(args: argparse.Namespace) -> str:
    question = args.question.strip()
    if not question:
        raise UserError("the question is empty")
    for flag in ("k", "num_beams", "max_answer_length", "query_length"):
        if getattr(args, flag) < 1:
            raise UserError(f"--{flag} {getattr(args, flag)}: must be at least 1")
    return question


def _read_answer(model: CLASSModel, params: Any, partitioner: Any, vocabulary: Any, question: str,
                 passages: Sequence[PassageRecord], query_length: int, passage_length: int) -> str:
    """Decodes the answer from the question paired with each passage (FiD)."""
    query_tokens = text_inputs.query_batch(vocabulary, [question], query_length,
                                           normalize=model.config.normalize_queries)
    passage_tokens = text_inputs.passage_batch(vocabulary, [p.title for p in passages], [p.text for p in passages],
                                               passage_length)[None]
    batch = {"query_tokens": query_tokens, "passage_tokens": passage_tokens}
    with partitioner.activate():
        predict = jax.jit(model.predict_batch, compiler_options=partitioner.inference_compiler_options())
        tokens = np.asarray(predict(params, batch))[0]
    ends = np.flatnonzero(tokens == model.eos_id)
    kept = tokens[:ends[0]] if len(ends) else tokens
    return vocabulary.decode([int(t) for t in kept if t > 0])


def _preview(text: str, words: int) -> str:
    split = text.split()
    return " ".join(split[:words]) + (" ..." if len(split) > words else "")


def _print(question: str, answer: str, passages: Sequence[RetrievedPassage], preview_words: int,
           as_json: bool) -> None:
    if as_json:
        print(json.dumps({"question": question, "answer": answer,
                          "passages": [dataclasses.asdict(p) for p in passages]}, ensure_ascii=False))
        return
    print(f"question: {question}")
    print(f"answer:   {answer}")
    print(f"top {len(passages)} passages:")
    for passage in passages:
        print(f"  {passage.rank:>3}. {passage.score:10.4f}  {passage.title}  [{passage.id}]  "
              f"{_preview(passage.text, preview_words)}")


def run(args: argparse.Namespace) -> int:
    """Retrieves, reads and prints (process 0).

    Raises:
      UserError: an empty question, bad flags, a missing checkpoint or index, or a model or vocabulary other
        than the index's.
    """
    question = _check_arguments(args)
    partitioner = common.start_model_command(args)
    config = params_io.load_config(pathlib.Path(args.checkpoint))  # fails first, naming a wrong --checkpoint
    index = IndexReader(args.index)
    if args.k > index.num_rows:
        raise UserError(f"--k {args.k}: the index {index.path} holds only {index.num_rows} passages")
    vocabulary, loaded = retrieve.load_model_for_index(index, args.checkpoint, args.vocab, partitioner)

    # Every device takes part in the encoding, so one row per device (only the first is the question).
    encoder = RetrievalEncoder(loaded.model, loaded.params, partitioner, jax.device_count())
    query_vectors = retrieve.encode_queries(encoder, vocabulary, [question], args.query_length)
    searcher = retrieve.make_index_searcher(loaded, index, "auto", with_ids=False, query_length=args.query_length)
    scores, rows = searcher.search_rows(query_vectors, args.k)
    records = index.corpus(args.corpus).fetch(rows[0])
    found = [records[int(row)] for row in rows[0]]

    reader = CLASSModel(config, max_decode_length=args.max_answer_length, num_beams=args.num_beams,
                        eos_id=int(vocabulary.eos_id))
    answer = _read_answer(reader, loaded.params, partitioner, vocabulary, question, found, args.query_length,
                          index.spec.passage_max_length)
    if jax.process_index() != 0:
        return 0
    passages = [RetrievedPassage(rank=rank, id=record.passage_id, title=record.title, text=record.text,
                                 score=float(score))
                for rank, (record, score) in enumerate(zip(found, scores[0]), start=1)]
    _print(question, answer, passages, args.preview_words, args.json)
    return 0
