"""class_jax.commands: the `class-jax` subcommands, one module each (the top floor: it may import any package).

A command module provides `add_arguments(parser)` and `run(args) -> exit code`, parses flags in snake_case (as
T5X does; `class_jax.cli` accepts the old hyphenated spellings for one release, with a deprecation warning), and
leaves the work to the package that owns it. Modules, in pipeline order:
  common             logging, multi-process start-up, gin flags; the flags of commands that load a model
  make_demo_wiki     the generated demo wiki (class_jax.demo.world)
  ingest             Wikipedia dumps -> corpus (class_jax.corpus)
  import_corpus      a published DPR / CORA passage file -> corpus passages (class_jax.corpus)
  mine               corpus -> CLR-PT / MLQA-PT data (class_jax.mining)
  build_fid          mined records or questions + passages -> FiD example directories (class_jax.fid)
  convert            checkpoint import / export / parity (class_jax.checkpoints)
  jobs               train / eval / infer / export: the gin-configured jobs of class_jax.trainer
  index, retrieve, ask   corpus encoding, top-k search, one question answered (class_jax.retrieval)
  scorer_output      what the scorer commands share
  eval_xor_retrieve, eval_xor_full, eval_xor_engspan, eval_mkqa   the official scorers (class_jax.evaluation)
  demo               the whole method on the generated wiki (class_jax.demo)
"""
