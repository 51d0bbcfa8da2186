"""class_jax.checkpoints: checkpoint import / export (nothing heavy is imported here).

Modules, in data-flow order:
  param_layout    the parameter tree a ModelConfig implies (what every import is checked against)
  import_report   what an import did; the only place parameters absent from a source are created
  hf/             Hugging Face T5 / mT5 / ReAtt / released-CLASS checkpoints: read, map, export, verify
  t5x             T5X msgpack (single file or tensorstore / zarr layout) -> ImportedCheckpoint
  atomic_dir      writing a directory that readers see whole or not at all
  params_io       our format: model_config.json + Orbax params/ (+ spiece.model, import_report.json);
                  `load_params` is the trainer's "initial checkpoint" restore
"""
