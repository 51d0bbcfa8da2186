"""Stage-2 (MLQA-PT) question rewriting: cloze queries -> natural questions by in-context learning.

Modules, in data-flow order:
  rewriter            the `Rewriter` interface and the resumable rewriting pipeline
  cache               append-only JSONL cache of rewrites (a rerun repeats no LLM call)
  prompting           per-language demonstration files (prompts/<lang>.json) and chat message building
  http_rewriter       any OpenAI-compatible chat / completions server
  local_rewriter      a local Hugging Face causal LM
  template_rewriter   rule-based rewriting for offline use
  filters             checks on rewrites (answer leak, language, length), each with a named reason
"""
