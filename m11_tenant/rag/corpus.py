"""The RAG corpus and its labelled eval set, loaded from JSON Lines files in ``data/corpus/``.

The corpus is content-addressed: :attr:`Corpus.checksum` is the sha256 of the passages
(ids, titles and texts in file order), so precomputed embeddings can say which corpus they
were built from and be rebuilt when it changes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from m11_tenant.schema import DATA_DIR

#: Where the corpus, its eval set and its precomputed embeddings live.
CORPUS_DIR = DATA_DIR / "corpus"


@dataclass(frozen=True)
class Passage:
    """One retrievable passage."""

    id: str
    title: str
    text: str
    topic: str = ""


@dataclass(frozen=True)
class EvalQuestion:
    """A question with the ids of the passages that answer it."""

    qid: str
    question: str
    relevant: tuple[str, ...]
    kind: str = ""


@dataclass(frozen=True)
class Corpus:
    """An ordered, immutable collection of passages; row ``i`` of every index is passage ``i``."""

    passages: tuple[Passage, ...]
    source: str = ""

    def __post_init__(self) -> None:
        ids = [p.id for p in self.passages]
        if len(set(ids)) != len(ids):
            dupes = sorted({i for i in ids if ids.count(i) > 1})
            raise ValueError(f"corpus has duplicate passage ids: {dupes[:5]}")
        if not self.passages:
            raise ValueError("corpus is empty")

    def __len__(self) -> int:
        return len(self.passages)

    @property
    def checksum(self) -> str:
        """sha256 over ids, titles and texts: what the precomputed embeddings depend on."""
        h = hashlib.sha256()
        for p in self.passages:
            h.update(json.dumps([p.id, p.title, p.text], ensure_ascii=False).encode())
            h.update(b"\n")
        return h.hexdigest()

    def by_id(self, passage_id: str) -> Passage:
        for p in self.passages:
            if p.id == passage_id:
                return p
        raise LookupError(f"no passage with id {passage_id!r}")

    @classmethod
    def from_passages(cls, passages: Iterable[Passage], source: str = "") -> Corpus:
        return cls(tuple(passages), source)


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path.name} line {n}: not valid JSON ({exc.msg})") from exc
    return rows


def load_corpus(path: str | Path | None = None) -> Corpus:
    """Load passages from a JSON Lines file (default ``data/corpus/passages.jsonl``).

    Each line is ``{"id", "title", "text", "topic"}``; ``topic`` is optional.
    Raises ``FileNotFoundError`` if the file is missing and ``ValueError`` on a bad line or a
    duplicate id.
    """
    path = Path(path) if path is not None else CORPUS_DIR / "passages.jsonl"
    rows = _read_jsonl(path)
    passages = []
    for n, row in enumerate(rows, 1):
        try:
            passages.append(Passage(str(row["id"]), str(row["title"]), str(row["text"]),
                                    str(row.get("topic", ""))))
        except KeyError as exc:
            raise ValueError(f"{path.name} passage {n}: missing field {exc.args[0]!r}") from exc
    return Corpus(tuple(passages), str(path))


def load_eval(path: str | Path | None = None) -> list[EvalQuestion]:
    """Load the eval set (default ``data/corpus/eval.jsonl``).

    Each line is ``{"qid", "question", "relevant": [passage ids], "kind"}``.
    """
    path = Path(path) if path is not None else CORPUS_DIR / "eval.jsonl"
    return [
        EvalQuestion(str(r["qid"]), str(r["question"]), tuple(str(x) for x in r["relevant"]),
                     str(r.get("kind", "")))
        for r in _read_jsonl(path)
    ]
