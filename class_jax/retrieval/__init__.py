"""class_jax.retrieval: corpus encoding into an index, and exact top-k search.

Modules, in data-flow order:
  corpus_source   an ingested corpus as numbered rows (streaming, validation, text look-up by row)
  model_identity  config hash + parameter fingerprint recorded in an index
  loaded_model    a params directory's vocabulary and its model placed on the mesh
  encoder         jitted, sharded retrieval encoding of token batches (`RetrievalEncoder`)
  index_format    the on-disk index (shards, ids, spec, manifest, checksums)
  index_builder   `build_index` / `encode_corpus`: resumable, multi-host index building
  index_reader    `IndexReader`: manifest checks, memory-mapped rows, passage ids
  search          `DeviceSearcher` (sharded JAX) and `FaissSearcher` (CPU), same exact top-k
  retrieve        query encoding and a searcher over a whole index
  predictions     XOR-TyDi query files in, XOR-Retrieve predictions out
  dev_eval        XOR-Retrieve dev R@2kt / R@5kt with the current parameters' own retrieval (a dev evaluator)
The pair text format and its tokenisation live in class_jax.tasks.text_inputs. Deprecated alias, kept one release
for old gin files: refresh (now class_jax.fid.refresh).
"""
