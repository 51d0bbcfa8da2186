"""`class-jax build-fid`: the FiD example directories a stage trains or evaluates on.

    --kind clr_pt     mined CLR-PT records with the teacher's passages  -> one directory per language (stage 1);
                      with --retriever index, a dense index's top k for the English clozes instead
                      or the release's files: --release_queries (mss.parallel.train.txt), --release_rankings
                      (its ranking JSON) and --release_passages (psgs_w100.tsv) or --corpus
    --kind mlqa_pt    mined MLQA-PT questions + a retriever's top-k       -> one directory per language (stage 2)
    --kind finetune   XOR-TyDi jsonl / NQ-open csv questions + top-k     -> one directory (fine-tuning; with --eval
                                                                            the targets are left empty)
    --kind xor_full_eval / mkqa_eval / xor_retrieve_eval                  -> as finetune --eval (evaluation)

Kinds are stage names (class_jax/runtime/stages.py); the old `--kind questions` still works, as finetune, with a
FutureWarning.

Retrievers: `bm25` (English passages only, no model needed) or `index` (a class_jax checkpoint and the index it
built with `class-jax index`; any language). `--out` may hold `{lang}` for the per-language kinds.

The release's queries files hold no language: with several `--langs`, `--release_queries` and `--out` must hold
`{lang}` (`--release_rankings` may, or be one file for all); with one, the files are that language's.
"""

import argparse
import pathlib
from typing import Any

from class_jax.commands import common
from class_jax.mining.teacher import BM25Teacher
from class_jax.runtime.errors import UserError
from class_jax.fid import builders
from class_jax.tasks import query_sources
from class_jax.runtime import distributed
from class_jax.runtime import stages
from class_jax.runtime import gin_utils


# The kinds built from `class-jax mine` output (one directory per language); the others read --questions.
_MINED_KINDS = (stages.Stage.CLR_PT, stages.Stage.MLQA_PT)
KINDS = _MINED_KINDS + (stages.Stage.FINETUNE,) + stages.EVAL_STAGES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kind", required=True, metavar="{" + ",".join(stages.names(KINDS)) + "}",
                        help="the stage the files are for")
    parser.add_argument("--corpus", help="ingested corpus root (class-jax ingest or import-corpus); the release's "
                                         "clr_pt files may name --release_passages instead")
    parser.add_argument("--out", required=True, help="output directory; may contain {lang} for clr_pt / mlqa_pt")
    parser.add_argument("--langs", nargs="+", default=None,
                        help="languages of the mined records (clr_pt / mlqa_pt) or of the passages to load")
    parser.add_argument("--mined", help="output of `class-jax mine` (clr_pt / mlqa_pt)")
    parser.add_argument("--questions", help="XOR-TyDi jsonl or NQ-open csv (finetune and the eval kinds)")
    # The authors' released stage-1 data (clr_pt; class_jax/fid/release_formats.py), instead of --mined.
    parser.add_argument("--release_queries", metavar="PATH",
                        help="clr_pt: the release's mss.parallel.train.txt (qid, English cloze, translation, answer); "
                             "may contain {lang}")
    parser.add_argument("--release_rankings", metavar="PATH",
                        help="clr_pt: the release's ranking JSON [{qid, pids}], the teacher's passages best first; "
                             "may contain {lang}")
    parser.add_argument("--release_passages", metavar="FILE",
                        help="clr_pt: the DPR-style psgs_w100.tsv holding the ranked passages (instead of --corpus)")
    parser.add_argument("--eval", action="store_true",
                        help="finetune: leave targets empty (evaluation files; the eval kinds imply it)")
    parser.add_argument("--k", type=int, default=100, help="passages per query")
    parser.add_argument("--num_shards", type=int, default=1)
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--retriever", choices=("bm25", "index"), default="bm25")
    parser.add_argument("--passage_langs", nargs="+", default=["en"],
                        help="languages whose passages the retriever searches and the records may name")
    # Dense retrieval (--retriever index).
    parser.add_argument("--checkpoint", help="class_jax params directory (--retriever index)")
    parser.add_argument("--index", help="index directory from `class-jax index` (--retriever index)")
    parser.add_argument("--vocab", default=None, help="SentencePiece model (default: the checkpoint's)")
    parser.add_argument("--backend", choices=("device", "faiss"), default="device")
    parser.add_argument("--batch_size", type=int, default=64, help="questions encoded per step over all devices")
    parser.add_argument("--log_level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    gin_utils.add_gin_arguments(parser)  # an optional gin/sharding file for the dense encoder
    distributed.add_arguments(parser)


def _check(args: argparse.Namespace) -> None:
    try:
        args.kind = stages.parse(args.kind, allowed=KINDS, what="--kind")
    except ValueError as e:
        raise UserError(str(e)) from e
    if args.kind.is_eval:
        args.eval = True
    if args.k < 1:
        raise UserError(f"--k {args.k} must be >= 1")
    if _from_release(args):
        _check_release(args)
    elif args.kind is stages.Stage.CLR_PT and not (args.mined and args.langs):
        raise UserError("--kind clr_pt needs --mined DIR and --langs, or the release's files (--release_queries, "
                        "--release_rankings, --release_passages)")
    elif args.kind in _MINED_KINDS and not (args.mined and args.langs):
        raise UserError(f"--kind {args.kind} needs --mined DIR and --langs")
    if args.kind not in _MINED_KINDS and not args.questions:
        raise UserError(f"--kind {args.kind} needs --questions FILE")
    if args.retriever == "index" and not (args.checkpoint and args.index):
        raise UserError("--retriever index needs --checkpoint and --index")
    if args.corpus is None and not _from_release(args):
        raise UserError(f"--kind {args.kind} needs --corpus ROOT")
    if args.corpus is not None and not pathlib.Path(args.corpus).is_dir():
        raise UserError(f"--corpus {args.corpus}: no such directory")


def _from_release(args: argparse.Namespace) -> bool:
    return bool(args.release_queries or args.release_rankings or args.release_passages)


def _check_release(args: argparse.Namespace) -> None:
    """The flags of a clr_pt build from the release's files."""
    if args.kind is not stages.Stage.CLR_PT:
        raise UserError(f"--release_queries / --release_rankings / --release_passages are stage-1 data: use them "
                        f"with --kind clr_pt, not {args.kind}")
    if args.mined:
        raise UserError("--kind clr_pt reads either --mined or the release's files (--release_*), not both")
    if not (args.release_queries and args.release_rankings):
        raise UserError("--kind clr_pt from the release needs --release_queries and --release_rankings")
    if bool(args.release_passages) == bool(args.corpus):
        raise UserError("--kind clr_pt from the release needs the passages from exactly one of --release_passages "
                        "FILE (psgs_w100.tsv) or --corpus ROOT (its import-corpus)")
    if not args.langs:
        raise UserError("--kind clr_pt from the release needs --langs: the language of the queries (the files hold "
                        "none)")
    if len(set(args.langs)) > 1:
        for flag, path in (("--release_queries", args.release_queries), ("--out", args.out)):
            if "{lang}" not in path:
                raise UserError(f"{flag} {path}: several --langs need {{lang}} in the path (a queries file holds no "
                                f"language)")


def _retriever(args: argparse.Namespace, passages: dict) -> Any:
    if args.retriever == "index":
        # Imported here: jax and model loading are only needed for dense retrieval.
        from class_jax.retrieval import retrieve  # pylint: disable=import-outside-toplevel
        return retrieve.IndexRetriever(args.index, args.checkpoint, args.vocab, common.start_model_command(args),
                                       args.batch_size, args.backend)
    if set(args.passage_langs) != {"en"}:
        raise UserError("--retriever bm25 searches English passages only: use --passage_langs en or --retriever index")
    return BM25Teacher.build(passages.values())


def _load_questions(path: str) -> list:
    if path.endswith(".csv"):
        return query_sources.load_nq_csv(path, pathlib.Path(path).stem)
    return query_sources.load_xor_questions(path)


def run(args: argparse.Namespace) -> int:
    """Builds the FiD directories and prints where they are and how many examples each holds."""
    _check(args)
    if _from_release(args):
        return _run_release(args)
    passages = builders.load_passages(args.corpus, args.passage_langs)
    if not passages:
        raise UserError(f"{args.corpus}: no passages in {', '.join(args.passage_langs)}")
    if args.kind is stages.Stage.CLR_PT:
        # --retriever index: the passages of a dense (e.g. neural teacher's) index instead of mine's BM25 ones.
        manifests = builders.write_clr_pt_fid_files(
            args.mined, passages, args.out, args.langs, num_passages=args.k, num_shards=args.num_shards,
            overwrite=args.overwrite, retriever=_retriever(args, passages) if args.retriever == "index" else None)
    elif args.kind is stages.Stage.MLQA_PT:
        manifests = builders.write_mlqa_pt_fid_files(args.mined, _retriever(args, passages), passages, args.out,
                                                         args.langs, num_passages=args.k,
                                                         num_shards=args.num_shards, overwrite=args.overwrite)
    else:
        manifests = {"": builders.write_question_fid_files(
            _load_questions(args.questions), _retriever(args, passages), passages, args.out, num_passages=args.k,
            with_target=not args.eval, num_shards=args.num_shards, overwrite=args.overwrite)}
    for lang, manifest in sorted(manifests.items()):
        print(f"{args.out.replace('{lang}', lang) if lang else args.out}: {manifest['num_examples']} examples, "
              f"k = {manifest['num_passages']}")
    return 0


def _run_release(args: argparse.Namespace) -> int:
    """Stage-1 directories from the release's files; prints each and what was not written."""
    manifests = builders.write_release_clr_pt_fid_files(
        args.release_queries, args.release_rankings, args.out, args.langs, num_passages=args.k,
        passages_file=args.release_passages, corpus_dir=args.corpus, passage_langs=args.passage_langs,
        num_shards=args.num_shards, overwrite=args.overwrite)
    for lang, manifest in sorted(manifests.items()):
        meta = manifest["metadata"]
        unranked = meta["unranked_queries"]
        examples = f" (e.g. {', '.join(meta['unranked_examples'])})" if unranked else ""
        print(f"{args.out.replace('{lang}', lang)}: {manifest['num_examples']} examples, k = "
              f"{manifest['num_passages']}; {unranked} queries of {meta['queries']} have no ranking and were not "
              f"written{examples}; {meta['short_rankings']} rankings had fewer than k passages; "
              f"{meta['masked_translations']} translations had the answer masked as _X_")
    return 0
