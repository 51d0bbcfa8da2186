"""Hugging Face checkpoints: HF T5 / mT5 / ReAtt / released-CLASS directories to our parameters and back.

Modules, in data-flow order:
  tensor_files   torch-free safetensors and safe torch-zip (.bin) readers
  config         HF config.json <-> ModelConfig
  mapping        the HF tensor name <-> parameter path table (both directions)
  reader         an HF directory -> ImportedCheckpoint (`load_hf_checkpoint`)
  export         our params -> HF config.json + model.safetensors (`export_hf`)
  verify         parity of our Flax model with transformers on the same weights (`compare_with_hf`)
"""
