"""The opt-in query log: what one answered question leaves behind, redacted first.

A tenant turns it on with ``query_log_size`` (0, the default, keeps nothing). Each entry
keeps the question, the retrieved source ids, the model, tokens and cost — enough to
replay the question under a proposed config and to price the difference — and never the
answer. Obvious personal data is replaced before anything reaches the store:

- e-mail addresses become ``[email]``;
- runs of 6 or more digits, even split by spaces, dots or dashes (phone, card, account
  and order numbers, dates written as digits) become ``[number]``.

Redaction is pattern matching, not understanding: names, street addresses or a secret
typed in words stay as typed. The README says so where tenants decide to turn it on.
"""

from __future__ import annotations

import re

from m11_tenant.rag.pipeline import QueryResult
from m11_tenant.store import QUERY_LOG_MAX_AGE_DAYS, LoggedQuery, QueryLog

_EMAIL = re.compile(r"[\w.%+-]+@[\w-]+(?:\.[\w-]+)+")
_DIGIT_RUN = re.compile(r"\+?\d(?:[ .\-]?\d){5,}")
EMAIL_MARK, NUMBER_MARK = "[email]", "[number]"


def redact(text: str) -> str:
    """``text`` with e-mail addresses and long digit runs replaced (see the module doc)."""
    return _DIGIT_RUN.sub(NUMBER_MARK, _EMAIL.sub(EMAIL_MARK, text))


def logged_query(tenant_id: str, result: QueryResult) -> LoggedQuery:
    """The log entry for one answered question (redacted; the store sets its time)."""
    return LoggedQuery(
        tenant_id=tenant_id, question=redact(result.question),
        source_ids=tuple(s.id for s in result.sources), model=result.model_used,
        prompt_tokens=result.usage.prompt_tokens,
        completion_tokens=result.usage.completion_tokens, cost_usd=result.cost_usd)


def record_query(store: QueryLog, tenant_id: str, result: QueryResult, *, keep: int,
                 max_age_days: int = QUERY_LOG_MAX_AGE_DAYS) -> bool:
    """Log ``result`` if the tenant keeps a log (``keep`` > 0); True when it was written.

    One insert and one trim in a single transaction: the log never holds more than
    ``keep`` entries, nor any older than ``max_age_days``.
    """
    if keep <= 0:
        return False
    store.append_query_log(logged_query(tenant_id, result), keep=keep,
                           max_age_days=max_age_days)
    return True
