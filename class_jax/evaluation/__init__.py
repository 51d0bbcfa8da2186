"""Scorers identical to the official XOR-TyDi QA and MKQA evaluation scripts, with corrected variants beside them.

Modules: `text` (normalisation, MeCab, NLTK tokenisation), `files` (reading gold / prediction files),
`xor_retrieve` (R@2kt / R@5kt), `xor_full` (F1 / EM / BLEU), `xor_engspan`, `mkqa` (MKQA data and the CLASS /
CORA rule), `mkqa_apple` (Apple's official MKQA metric), `metrics` (SeqIO metric functions) and `commands`
(the `class-jax eval-*` commands). Each scorer's module docstring lists the official quirks it reproduces.
"""
