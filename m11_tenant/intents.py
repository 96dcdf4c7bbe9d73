"""The injection guard's semantic layer: sentences compared with labelled injection intents.

Rules catch wordings, and a paraphrase ("the guidance you got before does not count any
more") walks past any list of them. This layer embeds each sentence of a text with the
MiniLM model the package already ships (:mod:`m11_tenant.minilm`, shared with retrieval)
and compares it with exemplar sentences of a few labelled intents
(``assets/injection_intents.json``): override the instructions, leak the prompt, switch
mode, claim privileges, exfiltrate data. A sentence is flagged when

* its best cosine with an intent's exemplars reaches :data:`THRESHOLD`, and
* it is at least :data:`MARGIN` closer to that exemplar than to every benign anchor (tenant
  instructions that share words with attacks, such as "administrators can reset
  passwords").

Both numbers were chosen on the tuning set (``tests/data/injection_eval.json``), never on
the held-out set, by a fixed rule: the lowest threshold with no false alarm there, plus
0.02 of headroom, and the smallest margin that keeps it so (0: closer to an attack than to
any anchor). ``python bench/injection_guard.py --tune`` prints the sweep. Negated sentences
are not embedded (embeddings hardly see a "not"); they are left to the rules. The model is
English-only: other languages rest on the rule layers.

Sentence vectors are cached (a template edited one sentence at a time re-embeds one
sentence), so only new text costs model time: a few milliseconds a sentence.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from m11_tenant.minilm import shared_minilm

__all__ = ["MARGIN", "THRESHOLD", "IntentMatch", "IntentMatcher", "default_matcher",
           "split_sentences"]

INTENTS_PATH = Path(__file__).resolve().parent / "assets" / "injection_intents.json"
#: Cosine a sentence must reach with an intent exemplar (tuned, see the module docstring).
THRESHOLD = 0.66
#: How much closer to that exemplar than to every benign anchor it must be.
MARGIN = 0.0
#: Sentences embedded per text at most: bounds the cost of a 2,000-character template.
MAX_SENTENCES = 32

_SPLIT = re.compile(r"(?<=[.!?;:。！？；])\s+|\n+|(?<=[。！？；])")
_WORD = re.compile(r"[^\W\d_]{2,}")


# Sentence embeddings hardly see a negation: "do not ignore previous instructions" sits
# next to "ignore all previous instructions". Negated sentences are left to the rules.
_NEGATED = re.compile(r"\b(?:not|never|nor|dont|don't|don’t|cannot|can't|won't|mustn't"
                      r"|shouldn't)\b", re.IGNORECASE)


def split_sentences(text: str) -> list[str]:
    """The sentences worth embedding: split at sentence ends and line breaks, placeholders
    dropped, at least three words each, no negation."""
    text = re.sub(r"\{+\s*\w*\s*\}+", " ", text)
    sentences = [" ".join(part.split()) for part in _SPLIT.split(text)]
    return [s for s in sentences
            if (len(_WORD.findall(s)) >= 3 or (len(s) >= 6 and not s.isascii()))
            and not _NEGATED.search(s)][:MAX_SENTENCES]


@dataclass(frozen=True)
class IntentMatch:
    """The closest intent exemplar to the most suspicious sentence of a text."""

    intent: str
    score: float
    margin: float
    sentence: str
    exemplar: str

    def flagged(self, threshold: float = THRESHOLD, margin: float = MARGIN) -> bool:
        return self.score >= threshold and self.margin >= margin


class IntentMatcher:
    """Scores texts against labelled intent exemplars with any sentence embedder.

    Parameters:
        embed: texts -> an (n, dim) array of L2-normalised vectors.
        intents: intent name -> exemplar sentences.
        benign: anchor sentences that must not be flagged.
        cache_size: sentence vectors kept (least recently used dropped).
    """

    def __init__(self, embed: Callable[[Sequence[str]], np.ndarray],
                 intents: dict[str, list[str]], benign: list[str], *,
                 cache_size: int = 4096):
        self._embed = embed
        self._labels = [(name, text) for name, texts in intents.items() for text in texts]
        self._attack = embed([text for _, text in self._labels])
        self._benign = embed(benign)
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def _vectors(self, sentences: list[str]) -> np.ndarray:
        with self._lock:
            known = {s: self._cache[s] for s in sentences if s in self._cache}
            for sentence in known:
                self._cache.move_to_end(sentence)
        missing = [s for s in dict.fromkeys(sentences) if s not in known]
        if missing:
            fresh = self._embed(missing)
            known.update(zip(missing, fresh, strict=True))
            with self._lock:
                for sentence, vector in zip(missing, fresh, strict=True):
                    self._cache[sentence] = vector
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return np.stack([known[s] for s in sentences])

    def best(self, text: str) -> IntentMatch | None:
        """The most suspicious sentence of ``text`` and its closest intent exemplar: among
        the sentences at least :data:`MARGIN` clear of the benign anchors, the one with
        the highest cosine (if none is clear, the highest overall)."""
        sentences = split_sentences(text)
        if not sentences:
            return None
        vectors = self._vectors(sentences)
        attack = vectors @ self._attack.T
        benign = (vectors @ self._benign.T).max(axis=1)
        flagged_first = attack.max(axis=1) - benign >= MARGIN
        order = np.lexsort((attack.max(axis=1), flagged_first))  # flagged, then highest
        row = int(order[-1])
        col = int(attack[row].argmax())
        intent, exemplar = self._labels[col]
        score = float(attack[row, col])
        return IntentMatch(intent, score, score - float(benign[row]), sentences[row], exemplar)

    def match(self, text: str) -> IntentMatch | None:
        """The matched intent if a sentence of ``text`` is flagged, else ``None``."""
        found = self.best(text)
        return found if found is not None and found.flagged() else None


@lru_cache(maxsize=1)
def default_matcher() -> IntentMatcher:
    """The shipped intents on the shared MiniLM model (loaded on first use)."""
    doc = json.loads(INTENTS_PATH.read_text(encoding="utf-8"))
    return IntentMatcher(shared_minilm().embed, doc["intents"], doc["benign"])
