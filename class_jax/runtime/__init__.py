"""class_jax.runtime: what every job runs on, below the model (imports nothing else of class_jax).

Modules, lowest first:
  errors        UserError: bad input shown as one line (file, record, problem) instead of a traceback
  stages        Stage: the one vocabulary of stage names (clr_pt, mlqa_pt, finetune, the eval kinds) and old aliases
  host_malloc   huge-page malloc for the `class-jax` process (re-executes once at start-up)
  tree_paths    '/'-joined parameter paths for nested-dict pytrees
  microbatches  the microbatch layout (microbatch m holds rows m, m + M, ...) of every accumulation
  partitioning  mesh ('data', 'fsdp', 'model') incl. DCN / multi-slice, logical-axis rules, per-host batches
  distributed   jax.distributed.initialize from flags, environment or the cluster
  preemption    SIGTERM / SIGINT -> checkpoint at the current step and stop
  gin_paths     where the gin files live (installed or source checkout)
  gin_utils     gin flags, search paths, scoped parsing, running a configured job, saving the operative config
  config_checks type and range checks of gin-configured values: one-line errors naming the gin parameter
"""
