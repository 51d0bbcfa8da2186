"""class_jax.mining: an ingested corpus -> the synthetic training data of stage 1 (CLR-PT) and stage 2 (MLQA-PT).

Modules, in data-flow order:
  clr_pt/        stage 1: the parallel-sentence rule, parallel cloze mining, the precision audit on real Wikipedia
  mlqa_pt        stage 2: anchor cloze queries in target-language articles
  rewrite/       stage 2: LLM (or template) rewriting of clozes into natural questions, cached and filtered
  teacher        the stage-1 English teacher's top-k passages and scores (BM25; no neural teacher yet, docs/method.md)
  dataset_io     output schemas, tf.train.Example encoding, deterministic sharded files
  beam           the Apache Beam pipeline: read the corpus, join articles to entities, mine, write shards
  stages         the driver side: inputs, rewriting and teacher index per stage
  pipeline       `run_mining`: runs (or resumes) the stages and writes the manifest
"""
