"""class_jax.trainer: the T5X-style training, evaluation and inference jobs (Flax / MaxText sharding).

Modules, in data-flow order:
  data           SeqIO DatasetConfig / plain iterators, per-host shards, resumable DataFeed
  train_state    TrainState and its sharded initialisation (eval_shape -> logical shardings -> jit out_shardings)
  fused_adamw    AdamW as one fused update per leaf
  optimizers     AdamW / Adafactor, warm-up + linear / rsqrt / cosine schedules, clipping, weight-decay mask
  grad_cache     gradient accumulation that keeps a whole-batch loss term (stage 1's in-batch scores): GradCache
  train_step     the pure, donated, explicitly sharded step with microbatching (lax.fori_loop) or GradCache
  teacher_checkpoint  the stage-1 teacher: read once (HF ReAtt, params directory or run), placed, frozen; its
                 identity recorded in the run and checked on resume
  checkpointer   the Orbax CheckpointManager wrapper (`TrainCheckpointer`), fallback past unreadable steps
  param_sources  warm starts (params_io or another run, name mapping) and inference restores
  hooks          periodic hooks (e.g. class_jax.fid.refresh) that may switch the training data
  dev_selection  dev evaluation every N steps and the best checkpoint by a dev metric (MODEL_DIR/best)
  metrics        throughput, MFU, stdout / metrics.jsonl / TensorBoard
  predictor      jitted, sharded decoding and scoring for eval / infer
  train_checks   the train job's start-of-job checks of its numbers and paths
  memory_estimate  per-device memory of a train configuration (params, optimizer, gradients, activations) and
                 the refusal of one that cannot fit
  train, evaluate, infer, export   the gin-configured jobs (run by `class-jax train|eval|infer|export`)
Deprecated aliases, kept one release for old gin files: partitioning (now class_jax.runtime.partitioning),
checkpoints (now checkpointer).
"""
