"""In-context prompts for LLM question rewriting: per-language demonstration files and chat message building.

A prompt file is JSON, one per language, `<lang>.json` (the package ships class_jax/mining/rewrite/prompts/; users may point
to their own folder):

    {"lang": "de", "language_name": "German", "mask_token": "_X_",
     "instruction": "optional; overrides the default instruction; may use {language_name} and {mask}",
     "demonstrations": [{"cloze": "... _X_ ...", "answer": "...", "question": "...?"}, ...]}

Demonstrations are written with the file's `mask_token`; they are re-masked to the mask in use.
"""

import dataclasses
import json
import os
import pathlib
import re
import threading
from typing import Any

from class_jax.mining.rewrite import rewriter
from class_jax.runtime.errors import UserError

PACKAGE_PROMPT_DIR = pathlib.Path(__file__).resolve().parent / "prompts"

DEFAULT_INSTRUCTION = (
    "Rewrite the {language_name} cloze sentence into one natural {language_name} question whose answer is the "
    "given answer. The blank is marked {mask}. Write the question in {language_name}, do not mention the answer, "
    "and reply with the question only.")

# Labels a model may put before its answer despite the demonstrations ("Question: ...", "質問：...").
_LABEL_PREFIX = re.compile(r"^\s*(?:question|q|質問|问题|問題|질문|frage|pregunta|вопрос|سؤال)\s*[:：]\s*", re.IGNORECASE)
_QUOTES = "\"'“”‘’«»「」"
# Reasoning models may prefix their reply with a <think>...</think> block.
_THINKING = re.compile(r"<think>.*?(?:</think>|$)", re.DOTALL | re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Demonstration:
    cloze: str
    answer: str
    question: str


@dataclasses.dataclass(frozen=True)
class LanguagePrompt:
    """A language's instruction and demonstrations, already re-masked to the mask in use.

    Attributes:
      lang: language code.
      language_name: the language's English name, for the instruction.
      instruction: the system instruction with {language_name} and {mask} filled in.
      demonstrations: (cloze, answer, question) examples.
      path: the file it came from.
    """

    lang: str
    language_name: str
    instruction: str
    demonstrations: tuple[Demonstration, ...]
    path: str


def _field(data: dict, name: str, path: pathlib.Path, where: str = "") -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{path}: {where}'{name}' must be a non-empty string")
    return value


def load_language_prompt(path: str | os.PathLike, lang: str, mask_token: str) -> LanguagePrompt:
    """Reads and checks one prompt file.

    Args:
      path: the JSON file.
      lang: the language it must describe.
      mask_token: the mask used by the clozes to rewrite; demonstrations are re-masked to it.

    Returns:
      The prompt.

    Raises:
      UserError: the file is missing, is not valid JSON, or misses or mis-types a field.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no prompt file for language '{lang}' (write one, or pass another prompt_dir)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise UserError(f"{path}:{error.lineno}: invalid JSON: {error.msg}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object")
    if data.get("lang", lang) != lang:
        raise UserError(f"{path}: 'lang' is {data.get('lang')!r} but the file is used for '{lang}'")
    file_mask = data.get("mask_token", "_X_")
    demos = data.get("demonstrations")
    if not isinstance(demos, list) or not demos:
        raise UserError(f"{path}: 'demonstrations' must be a non-empty list")
    demonstrations = []
    for number, demo in enumerate(demos, start=1):
        where = f"demonstration {number}: "
        if not isinstance(demo, dict):
            raise UserError(f"{path}: {where}expected an object with cloze, answer, question")
        cloze = _field(demo, "cloze", path, where)
        if cloze.count(file_mask) != 1:
            raise UserError(f"{path}: {where}cloze must contain the mask {file_mask!r} exactly once")
        demonstrations.append(Demonstration(cloze.replace(file_mask, mask_token), _field(demo, "answer", path, where),
                                            _field(demo, "question", path, where)))
    language_name = _field(data, "language_name", path)
    template = data.get("instruction") or DEFAULT_INSTRUCTION
    try:
        instruction = template.format(language_name=language_name, mask=mask_token)
    except (KeyError, IndexError, ValueError) as error:
        raise UserError(f"{path}: 'instruction' may only use {{language_name}} and {{mask}} ({error})") from None
    return LanguagePrompt(lang, language_name, instruction, tuple(demonstrations), str(path))


class PromptLibrary:
    """Finds and caches language prompts in a folder (by default the package's class_jax/mining/rewrite/prompts/)."""

    def __init__(self, prompt_dir: str | os.PathLike | None = None, mask_token: str = "_X_"):
        self.prompt_dir = pathlib.Path(prompt_dir) if prompt_dir is not None else PACKAGE_PROMPT_DIR
        self.mask_token = mask_token
        self._loaded: dict[str, LanguagePrompt] = {}
        self._lock = threading.Lock()

    def get(self, lang: str) -> LanguagePrompt:
        """The prompt of `lang`; raises UserError naming the expected path when there is none."""
        with self._lock:
            if lang not in self._loaded:
                if not re.fullmatch(r"[a-z]{2,3}(?:[-_][a-zA-Z]+)?", lang):
                    raise UserError(f"language code {lang!r} is not a Wikipedia language code")
                self._loaded[lang] = load_language_prompt(self.prompt_dir / f"{lang}.json", lang, self.mask_token)
            return self._loaded[lang]

    def languages(self) -> list[str]:
        return sorted(path.stem for path in self.prompt_dir.glob("*.json"))


def user_turn(cloze: str, answer: str) -> str:
    return f"Cloze: {cloze}\nAnswer: {answer}"


def chat_messages(prompt: LanguagePrompt, cloze: str, answer: str) -> list[dict[str, str]]:
    """System instruction, then each demonstration as a user/assistant exchange, then the cloze to rewriter."""
    messages = [{"role": "system", "content": prompt.instruction}]
    for demo in prompt.demonstrations:
        messages.append({"role": "user", "content": user_turn(demo.cloze, demo.answer)})
        messages.append({"role": "assistant", "content": demo.question})
    messages.append({"role": "user", "content": user_turn(cloze, answer)})
    return messages


def completion_prompt(prompt: LanguagePrompt, cloze: str, answer: str) -> str:
    """The same prompt as plain text, for models without a chat template; the model continues after 'Question:'."""
    blocks = [prompt.instruction]
    blocks += [f"{user_turn(demo.cloze, demo.answer)}\nQuestion: {demo.question}" for demo in prompt.demonstrations]
    blocks.append(f"{user_turn(cloze, answer)}\nQuestion:")
    return "\n\n".join(blocks)


def clean_model_output(text: str) -> str:
    """The question in a model reply: first non-empty line after any <think> block, without a 'Question:' label
    or wrapping quotes."""
    for line in _THINKING.sub("", text).strip().splitlines():
        line = _LABEL_PREFIX.sub("", line.strip())
        if len(line) >= 2 and line[0] in _QUOTES and line[-1] in _QUOTES:
            line = line[1:-1].strip()
        if line:
            return line
    return ""


class PromptedRewriter(rewriter.Rewriter):
    """Base of the LLM rewriters: builds the in-context prompt of a request from a `PromptLibrary`."""

    def __init__(self, prompts: PromptLibrary):
        self.prompts = prompts

    def prompt(self, request: rewriter.RewriteRequest) -> Any:
        return chat_messages(self.prompts.get(request.lang), request.cloze, request.answer)
