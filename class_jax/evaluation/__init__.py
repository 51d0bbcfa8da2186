"""class_jax.evaluation: scorers identical to the official XOR-TyDi QA and MKQA scripts, with corrected variants.

Modules, in data-flow order:
  records        gold questions, predictions, and the coverage report every scorer produces
  files          reading gold / prediction files with one-line errors naming file and record
  text           answer normalisation, MeCab / NLTK tokenisation, token-overlap scores
  xor_retrieve   R@2kt / R@5kt
  xor_full       F1 / EM / BLEU
  xor_engspan    XOR-EnglishSpan F1 / EM
  mkqa           MKQA data and the CLASS / CORA rule
  mkqa_apple     Apple's official MKQA metric
  metrics        the scorers as SeqIO metric functions
Each scorer's module docstring lists the official quirks it reproduces. The `class-jax eval-*` commands live in
class_jax.commands.
"""
