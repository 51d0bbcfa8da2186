"""Stage-1 (CLR-PT) mining: which English / target-language sentences are parallel, and the clozes made from them.

Modules, in data-flow order:
  rule       the configurable parallel-sentence rule (shared linked entities, length ratio, numbers / dates)
  parallel   parallel cloze mining from an English article and its target-language counterpart
  audit      a reproducible sample for hand-labelling the rule's precision on real Wikipedia, and its score
"""
