"""class_jax: CLASS cross-lingual open-domain QA in JAX/Flax.

Packages, lowest floor first (a package imports only from lower floors; tests/architecture_test.py checks it, and
docs/architecture.md says what each owns):
  runtime                        errors, mesh and logical-axis rules, multi-host start-up, gin helpers, preemption
  models                         the Flax mT5 / CLASS model, retriever kinds, losses, decoding, feature converter
  checkpoints, corpus, evaluation   checkpoint import / export; Wikipedia -> passages; the official scorers
  mining                         CLR-PT / MLQA-PT data from the corpus (Apache Beam), question rewriting, teachers
  tasks                          SeqIO tasks and the pair text format (installed from the top-level tasks/ folder)
  trainer                        train state, jitted step, loop, Orbax checkpoints, eval / infer / export jobs
  retrieval                      corpus encoding, the index, exact search
  fid                            FiD example building and the passage refresh hook
  demo                           the generated wiki (world/) and the whole-method demo with its report
  commands, cli                  the `class-jax` subcommands and their dispatcher
"""

__version__ = "0.1.0"
