"""class_jax.demo: the whole CLASS method on the generated multilingual wiki, with a report of each stage.

Modules, in data-flow order:
  world/     the generated wiki: invented entities and facts, articles in real dump formats, questions
  settings   what the demo runs: wiki size, vocabulary, steps per stage, evaluation depths
  ledger     the record of completed steps (a rerun skips them)
  console    what the demo prints while it runs
  systems    scoring one system (BM25 or a trained model) on the held-out questions
  pipeline   the steps in order: data -> stage 1 -> stage 2 -> fine-tuning, each model scored as it is made
  report     report.json, report.md and the plots
"""
