"""Question rewriting with a local Hugging Face causal LM (transformers is imported only when this is used).

The prompt is the same in-context prompt as the HTTP rewriter's: rendered with the tokenizer's chat template when
it has one, otherwise as plain "Cloze/Answer/Question" text that the model continues. Decoding is greedy, so a
rerun reproduces the same rewrites (and the cache key stays meaningful).
"""

import logging
from typing import Any, Sequence

from class_jax.mining.rewrite import rewriter as rewrite
from class_jax.mining.rewrite import prompting
from class_jax.runtime.errors import UserError

logger = logging.getLogger(__name__)


class TransformersRewriter(prompting.PromptedRewriter):
    """Rewrites clozes with a local causal language model through `transformers`."""

    def __init__(self, model_name_or_path: str, prompts: prompting.PromptLibrary, *,
                 max_new_tokens: int = 64, batch_size: int = 8, device: str | None = None,
                 model: Any = None, tokenizer: Any = None):
        """Loads (or takes) the model and tokenizer.

        Args:
          model_name_or_path: Hub id or local folder; also names the model in the cache key.
          prompts: the demonstration library.
          max_new_tokens: most generated tokens per question.
          batch_size: prompts per `generate` call.
          device: torch device ("cpu", "cuda", ...); default: CUDA when available.
          model: an already loaded model (then `tokenizer` is needed too); skips loading.
          tokenizer: an already loaded tokenizer.

        Raises:
          UserError: transformers/torch are not installed, or the model cannot be loaded.
        """
        super().__init__(prompts)
        try:
            import torch  # pylint: disable=import-outside-toplevel
            import transformers  # pylint: disable=import-outside-toplevel
        except ImportError as error:
            raise UserError(f"the local rewriter needs torch and transformers (pip install 'class_jax[hf]'): "
                            f"{error}") from None
        self._torch = torch
        self.model_name_or_path = model_name_or_path
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            self.tokenizer = tokenizer or transformers.AutoTokenizer.from_pretrained(model_name_or_path)
            self.model = model or transformers.AutoModelForCausalLM.from_pretrained(model_name_or_path)
        except OSError as error:
            raise UserError(f"cannot load the rewriting model {model_name_or_path!r}: {error}") from None
        self.model.to(self.device).eval()
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        # Decoder-only models continue the last position, so prompts must be padded on the left.
        self.tokenizer.padding_side = "left"
        self.uses_chat_template = bool(getattr(self.tokenizer, "chat_template", None))

    def config(self) -> dict:
        return {"kind": "transformers", "model": self.model_name_or_path, "max_new_tokens": self.max_new_tokens,
                "decoding": "greedy", "chat_template": self.uses_chat_template}

    def render(self, request: rewrite.RewriteRequest) -> str:
        """The prompt text given to the model for one request."""
        language_prompt = self.prompts.get(request.lang)
        if self.uses_chat_template:
            messages = prompting.chat_messages(language_prompt, request.cloze, request.answer)
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return prompting.completion_prompt(language_prompt, request.cloze, request.answer)

    def _generate(self, texts: list[str]) -> list[str]:
        # The rendered chat template already holds any special tokens the model expects.
        inputs = self.tokenizer(texts, return_tensors="pt", padding=True,
                                add_special_tokens=not self.uses_chat_template).to(self.device)
        with self._torch.no_grad():
            output = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False,
                                         pad_token_id=self.tokenizer.pad_token_id)
        new_tokens = output[:, inputs["input_ids"].shape[1]:]
        return self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)

    def rewrite(self, requests: Sequence[rewrite.RewriteRequest],
                on_result: rewrite.ResultCallback | None = None) -> list[rewrite.RewriteResult]:
        results = []
        for start in range(0, len(requests), self.batch_size):
            chunk = requests[start:start + self.batch_size]
            try:
                replies = self._generate([self.render(request) for request in chunk])
                chunk_results = []
                for reply in replies:
                    question = prompting.clean_model_output(reply)
                    chunk_results.append(rewrite.RewriteResult(question or None, None if question else "empty_text"))
            except (RuntimeError, ValueError) as error:  # Out of memory, bad inputs: lose this chunk only.
                logger.warning("generation failed for %d clozes: %s", len(chunk), error)
                chunk_results = [rewrite.RewriteResult(None, "generation_error")] * len(chunk)
            for offset, result in enumerate(chunk_results):
                if on_result is not None:
                    on_result(start + offset, result)
            results.extend(chunk_results)
        return results
