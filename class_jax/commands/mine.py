"""`class-jax mine`: an ingested corpus -> CLR-PT and MLQA-PT training data (TFRecord + JSONL) and a manifest.

Everything after `--` is passed to Apache Beam as pipeline options, e.g.

    class-jax mine --corpus CORPUS --out OUT --langs ar ja ru -- --direct_num_workers=4
    class-jax mine ... -- --runner=DataflowRunner --project=P --region=R --temp_location=gs://B/tmp \\
        --setup_file=./setup.py          (Dataflow workers need the class_jax package)

Without runner options the DirectRunner runs in multi-process mode on all cores.
"""

import argparse
import time

from class_jax.mining import mlqa_pt
from class_jax.mining.clr_pt import rule as clr_pt_rule
from class_jax.demo.world import clr_pt_check
from class_jax.mining import pipeline as mining_pipeline
from class_jax.runtime.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declares the command's flags."""
    rule = clr_pt_rule.ParallelRuleConfig()
    parser.add_argument("--corpus", required=True, help="corpus root written by `class-jax ingest`")
    parser.add_argument("--out", required=True, help="output root (local, or gs://... for distributed runners)")
    parser.add_argument("--langs", nargs="+", required=True, help="target languages (English is the other side)")
    parser.add_argument("--stages", default=",".join(mining_pipeline.STAGES),
                        help="comma-separated stages: clr_pt, mlqa_pt, teacher (default: all)")
    parser.add_argument("--mask_token", default=mlqa_pt.RELEASED_MASK_TOKEN, help="mask in clozes (default _X_)")
    parser.add_argument("--records_per_shard", type=int, default=mining_pipeline.MiningConfig.records_per_shard,
                        help="target records per output shard")
    group = parser.add_argument_group("CLR-PT parallel rule (see class_jax/mining/clr_pt/rule.py)")
    group.add_argument("--max_length_ratio", type=float, default=rule.max_length_ratio)
    group.add_argument("--year_rule", choices=("equal", "subset", "ignore"), default=rule.year_rule)
    group.add_argument("--number_rule", choices=("equal", "subset", "ignore"), default=rule.number_rule)
    group.add_argument("--min_shared_entities", type=int, default=rule.min_shared_entities,
                       help="entities both sentences mention, the masked one included")
    group.add_argument("--max_one_sided_entities", type=int, default=rule.max_one_sided_entities)
    group.add_argument("--no_title_mentions", action="store_true",
                       help="count only linked mentions, not unlinked titles of linked entities")
    group.add_argument("--max_masks_per_pair", type=int, default=rule.max_masks_per_pair)
    group = parser.add_argument_group("MLQA-PT")
    group.add_argument("--mlqa_pt_answer_lang", choices=mlqa_pt.ANSWER_LANGS, default=mlqa_pt.TARGET_ANSWERS,
                       help="target: answers are the anchor texts; en: answers are the linked entities' English "
                            "titles (the release's English-answer variant for XOR-Retrieve; anchors whose entity "
                            "has no English article are dropped as no_english_article)")
    group = parser.add_argument_group("MLQA-PT question rewriting")
    group.add_argument("--rewriter", choices=("template", "http", "transformers", "none"), default="template",
                       help="template: offline rules; http: OpenAI-compatible server; transformers: local model; "
                            "none: keep the clozes only")
    group.add_argument("--rewriter_model", help="model name (http) or Hub id / folder (transformers)")
    group.add_argument("--rewriter_url", help="API root of the server, e.g. http://127.0.0.1:8000/v1")
    group.add_argument("--rewriter_api_key_env", default="OPENAI_API_KEY",
                       help="environment variable with the API key ('' for none)")
    group.add_argument("--prompt_dir", help="folder of per-language demonstrations (default: the package's)")
    group.add_argument("--rewrite_batch_size", type=int, default=64)
    group.add_argument("--rewrite_cache", help="rewrite cache file (default OUT/rewrite_cache.jsonl)")
    group = parser.add_argument_group("stage-1 teacher")
    group.add_argument("--teacher", choices=("bm25",), default="bm25",
                       help="bm25 over the corpus's English passages")
    group.add_argument("--k", type=int, default=mining_pipeline.TeacherSettings.k, help="passages per CLR-PT query")
    parser.add_argument("--audit_sample", type=int, default=mining_pipeline.MiningConfig.audit_sample,
                        help="CLR-PT pairs per language to write to OUT/clr_pt_audit/LANG.tsv for labelling by hand "
                             "(precision on real data: python -m class_jax.mining.clr_pt.audit FILES)")
    parser.add_argument("--fail_on_bad_lines", action="store_true",
                        help="stop at malformed input lines instead of counting and skipping them")
    parser.add_argument("--evaluate_demo", metavar="DEMO_DIR",
                        help="a `make-demo-wiki` folder: print the CLR-PT rule's precision/recall on its facts")
    parser.add_argument("--no_progress", action="store_true", help="no progress bars")
    parser.add_argument("beam_args", nargs="*", metavar="-- BEAM_OPTIONS",
                        help="Apache Beam pipeline options after `--` (runner, workers, project, ...)")


def config_from_args(args: argparse.Namespace) -> mining_pipeline.MiningConfig:
    """The mining configuration the flags describe.

    Raises:
      UserError: an option value is out of range.
    """
    try:
        rule = clr_pt_rule.ParallelRuleConfig(
            mask_token=args.mask_token, max_length_ratio=args.max_length_ratio, year_rule=args.year_rule,
            number_rule=args.number_rule, min_shared_entities=args.min_shared_entities,
            max_one_sided_entities=args.max_one_sided_entities, match_title_mentions=not args.no_title_mentions,
            max_masks_per_pair=args.max_masks_per_pair)
        anchor = mlqa_pt.AnchorClozeConfig(mask_token=args.mask_token)
    except ValueError as error:
        raise UserError(str(error)) from None
    for flag, value, lowest in (("--k", args.k, 1), ("--records_per_shard", args.records_per_shard, 1),
                                ("--audit_sample", args.audit_sample, 0),
                                ("--rewrite_batch_size", args.rewrite_batch_size, 1)):
        if value < lowest:
            raise UserError(f"{flag} must be at least {lowest}, got {value}")
    from class_jax.mining.rewrite import filters  # pylint: disable=import-outside-toplevel

    return mining_pipeline.MiningConfig(
        corpus=args.corpus, out=args.out, langs=tuple(args.langs),
        stages=tuple(stage.strip() for stage in args.stages.split(",") if stage.strip()),
        rule=rule, anchor=anchor, mlqa_pt_answer_lang=args.mlqa_pt_answer_lang,
        rewrite_filter=filters.RewriteFilterConfig(mask_token=args.mask_token),
        rewriter=mining_pipeline.RewriterSettings(
            kind=args.rewriter, model=args.rewriter_model, url=args.rewriter_url,
            api_key_env=args.rewriter_api_key_env or None, prompt_dir=args.prompt_dir,
            batch_size=args.rewrite_batch_size, cache=args.rewrite_cache),
        teacher=mining_pipeline.TeacherSettings(kind=args.teacher, k=args.k),
        records_per_shard=args.records_per_shard, audit_sample=args.audit_sample, beam_args=tuple(args.beam_args),
        fail_on_bad_lines=args.fail_on_bad_lines,
        clr_pt_check=(clr_pt_check.checker(args.evaluate_demo, args.corpus, args.mask_token)
                      if args.evaluate_demo else None),
        progress=not args.no_progress)


def _print_summary(manifest: dict) -> None:
    stages = manifest["stages"]
    if "clr_pt" in stages:
        print("CLR-PT (candidate sentence pairs -> kept pairs -> records; rejections by reason):")
        for lang in manifest["languages"]:
            counts = stages["clr_pt"]["counts"].get(lang, {})
            rejected = ", ".join(f"{reason} {n}" for reason, n in sorted(counts.get("rejected", {}).items()))
            print(f"  {lang}: candidates {counts.get('candidate_pairs', 0)}, kept {counts.get('kept_pairs', 0)}, "
                  f"clozes {counts.get('clozes', 0)} (duplicates {counts.get('duplicate_clozes', 0)}); "
                  f"rejected: {rejected or 'none'}")
    if "mlqa_pt" in stages:
        print("MLQA-PT anchor clozes (links -> kept; drops by reason):")
        for lang, counts in stages["mlqa_pt"]["counts"].items():
            dropped = ", ".join(f"{reason} {n}" for reason, n in sorted(counts.get("dropped", {}).items()))
            print(f"  {lang}: links {counts.get('links', 0)}, kept {counts.get('kept', 0)}; "
                  f"dropped: {dropped or 'none'}")
    if "mlqa_pt_questions" in stages:
        print("MLQA-PT questions (clozes -> kept questions):")
        for lang, report in stages["mlqa_pt_questions"]["counts"].items():
            print(f"  {lang}: {report['records']} -> {report['kept']} (failed {sum(report['failed'].values())}, "
                  f"filtered {sum(report['filtered'].values())}, from cache {report['from_cache']})")
    if "teacher" in stages:
        teacher = stages["teacher"]["teacher"]
        print(f"teacher: {teacher['kind']} over {teacher['passages']} English passages (k1 {teacher['k1']}, "
              f"b {teacher['b']}, stemmer {teacher['stemmer']}), top {stages['teacher']['settings']['teacher']['k']} "
              f"per CLR-PT record")


def run(args: argparse.Namespace) -> int:
    """Runs the mining stages and prints per-language counts.

    Raises:
      UserError: bad corpus, languages, stages or options.
    """
    started = time.time()
    manifest = mining_pipeline.run_mining(config_from_args(args))
    _print_summary(manifest)
    print(f"outputs and manifest.json in {args.out} ({time.time() - started:.1f} s)")
    return 0
