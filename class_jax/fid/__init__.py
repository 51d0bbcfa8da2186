"""class_jax.fid: Fusion-in-Decoder examples, from mined records or questions plus a retriever's passages.

Modules, in data-flow order:
  release_formats   readers of the authors' released stage-1 files (parallel queries, rankings, psgs_w100.tsv)
  builders          FiD examples from questions or mined records plus BM25 / teacher / dense-index passages
  refresh_queries   a refreshed run's training queries, in the exact order training consumes them
  refresh_rounds    refresh rounds on disk and the training data source that reads one
  refresh           the asynchronous passage update: a trainer hook that re-encodes and re-retrieves every N steps
"""
