"""class_jax.models: the CLASS mT5 encoder-decoder in Flax, its losses and decoding (T5X's model contract).

Modules, in data-flow order:
  config             ModelConfig: the network's hyper-parameters
  dense_grads        a Dense matmul whose backward pass XLA:CPU compiles to plain GEMMs
  layers             mT5 / T5.1.1 blocks with logical axis names on every parameter
  network            the encoder-decoder: retriever split at encoder layer B, Fusion-in-Decoder reader
  scoring            retrieval scores: pooled dot products (CLASS) and token max-sim (ReAtt)
  retrievers         the retriever kinds ("pooled", "token"), chosen by retrieval_mode: each owns its read-out at
                     layer B, head, vectors, scores, parameter names, HF keys and index arrays
  losses             answer cross-entropy, retrieval distillation KLs, the retrieval target
  decoding           greedy and beam decoding over a cached step function
  base               the BaseModel contract the trainer, evaluator and retrieval code rely on
  clr_pt             stage 1 as the release trains it: doubled batch, global-batch KLs, per-chunk reader terms,
                     and the split GradCache needs
  teacher            the stage-1 neural teacher's scores over the global batch and its decoder distribution
  feature_converter  SeqIO task features -> CLASSModel batch features (imported on use: it pulls in TensorFlow)
  class_model        CLASSModel: the BaseModel the trainer drives
"""
