"""Retrieval: text inputs, corpus encoding into an index, and exact top-k search.

Modules, in data-flow order:
  text_inputs     the exact query / passage formats and tokenisation (numpy and tf; shared with SeqIO tasks)
  corpus_source   an ingested corpus as numbered rows (streaming, validation, text look-up by row)
  encoder         jitted, sharded retrieval encoding of token batches (`RetrievalEncoder`)
  model_identity  config hash + parameter fingerprint recorded in an index
  index_format    the on-disk index (shards, ids, spec, manifest, checksums)
  corpus_encoder  `encode_corpus`: resumable, multi-host index building
  index_reader    `IndexReader`: manifest checks, memory-mapped rows, passage ids
  search          `DeviceSearcher` (sharded JAX) and `FaissSearcher` (CPU), same exact top-k
  retrieve        query encoding and a searcher over a whole index
  predictions     XOR-TyDi query files in, XOR-Retrieve predictions out
  loading         flags, mesh, vocabulary and sharded model for the commands
  index_cli / retrieve_cli   `class-jax index` / `class-jax retrieve`
"""
