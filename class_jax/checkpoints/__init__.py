"""Checkpoint import / export for class_jax.

Modules (import what you need; nothing heavy is imported here):
  hf_io.load_hf_checkpoint       HF T5 / mT5 / ReAtt / released-CLASS directory -> ImportedCheckpoint
  t5x_io.load_t5x_checkpoint     T5X msgpack (single file or tensorstore/zarr layout) -> ImportedCheckpoint
  params_io.save_params / load_params   our format: model_config.json + Orbax params/ (+ spiece.model,
                                 import_report.json); load_params is the trainer's "initial checkpoint" restore
  export.export_hf               our params -> HF config.json + model.safetensors
  verify.compare_with_hf         parity of our Flax model with transformers on the same weights
  hf_mapping                     the HF tensor name <-> parameter path table (both directions)
  hf_config                      HF config.json <-> ModelConfig
  param_layout                   the parameter tree a ModelConfig implies (what every import is checked against)
  import_report                  what an import did; the only place parameters absent from a source are created
  tensor_files                   torch-free safetensors and safe torch-zip (.bin) readers
  convert_cli                    the `class-jax convert` command
"""
