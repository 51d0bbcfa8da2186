"""class_jax.trainer: the T5X-style training, evaluation and inference jobs (Flax / MaxText sharding).

Modules, one job each:
  partitioning   mesh ('data', 'fsdp', 'model') incl. DCN/multi-slice, logical-axis rules, per-host batches
  train_state    TrainState and its sharded initialisation (eval_shape -> logical shardings -> jit out_shardings)
  train_step     the pure, donated, explicitly sharded step with microbatching (lax.fori_loop)
  optimizers     AdamW / Adafactor, warm-up + linear / rsqrt / cosine schedules, clipping, weight-decay mask
  data           SeqIO DatasetConfig / plain iterators, per-host shards, resumable DataFeed
  checkpoints    Orbax CheckpointManager wrapper, fallback past unreadable steps
  param_sources  warm starts (params_io or another run, name mapping) and inference restores
  hooks          periodic hooks (retrieval refresh) that may switch the training data
  preemption     SIGTERM / SIGINT -> checkpoint at the current step and stop
  metrics        throughput, MFU, stdout / metrics.jsonl / TensorBoard
  distributed    jax.distributed.initialize from flags, environment or the cluster
  train, evaluate, infer, export   the gin-configured jobs; *_cli the `class-jax` commands; gin_utils, commands
"""
