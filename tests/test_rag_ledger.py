"""The UsageLedger contract (gate, settlement, totals) on the production stores (the
in-memory twin, SQLite, and PostgreSQL when this run can reach it), on the ledger-only
InMemoryLedger, and on the write-behind ledger over each store."""

import threading
from datetime import date

import pytest

from m11_tenant.errors import StoreUnavailableError
from m11_tenant.rag.ledger import InMemoryLedger, UsageLedger, WriteBehindLedger
from m11_tenant.store import UsageDelta

DAY = date(2026, 3, 14)


@pytest.fixture(params=["memory", "store", "write-behind"])
def ledger(request, store):
    if request.param == "memory":
        yield InMemoryLedger()
        return
    if request.param == "store":
        yield store
        return
    behind = WriteBehindLedger(store, flush_interval=0.001)
    yield behind
    behind.close()


def record(ledger, tenant, day, cost, queries=1):
    ledger.record_usage(tenant, day, queries=queries, prompt_tokens=100, completion_tokens=10,
                        cost_usd=cost)


def reserve(ledger, tenant="acme", day=DAY, quota=3, budget=1.0):
    """True when the gate gave a slot (it returns the month's spend then, else None)."""
    spent = ledger.reserve_query(tenant, day, daily_queries=quota, monthly_budget_usd=budget)
    return spent is not None


def test_implements_the_protocol(ledger):
    assert isinstance(ledger, UsageLedger)


def test_empty_ledger_totals_are_zero(ledger):
    totals = ledger.usage_totals("acme", DAY)
    assert (totals.queries_today, totals.cost_month_usd) == (0, 0.0)


def test_queries_count_per_day_and_cost_per_calendar_month(ledger):
    record(ledger, "acme", date(2026, 2, 28), 5.0)  # previous month: not counted
    record(ledger, "acme", date(2026, 3, 1), 0.25)
    record(ledger, "acme", DAY, 0.5)
    record(ledger, "acme", DAY, 0.125, queries=2)
    record(ledger, "other", DAY, 9.0)  # another tenant: not counted
    totals = ledger.usage_totals("acme", DAY)
    assert totals.queries_today == 3
    assert totals.cost_month_usd == pytest.approx(0.875)
    assert totals.tokens_today == 2 * 110
    first = ledger.usage_totals("acme", date(2026, 3, 1))
    assert (first.queries_today, first.cost_month_usd) == (1, pytest.approx(0.25))


def test_the_gate_counts_up_to_the_quota_and_then_refuses(ledger):
    assert [reserve(ledger) for _ in range(5)] == [True, True, True, False, False]
    assert ledger.usage_totals("acme", DAY).queries_today == 3
    assert reserve(ledger, day=date(2026, 3, 15))  # a new day, a new quota
    assert reserve(ledger, tenant="other")  # per tenant


def test_a_released_slot_can_be_taken_again(ledger):
    assert [reserve(ledger, quota=1) for _ in range(2)] == [True, False]
    ledger.record_usage("acme", DAY, queries=-1, prompt_tokens=0, completion_tokens=0,
                        cost_usd=0.0)
    assert ledger.usage_totals("acme", DAY).queries_today == 0
    assert reserve(ledger, quota=1)


def test_the_gate_refuses_once_the_months_spend_reaches_the_budget(ledger):
    record(ledger, "acme", date(2026, 3, 2), 0.75, queries=0)
    ledger.usage_totals("acme", DAY)  # (write-behind: written now)
    spent = ledger.reserve_query("acme", DAY, daily_queries=3, monthly_budget_usd=1.0)
    assert spent == pytest.approx(0.75)  # $0.75 < $1: the slot, and the spend it saw
    ledger.usage_totals("acme", DAY)  # (write-behind: written now)
    record(ledger, "acme", DAY, 0.25, queries=0)
    ledger.usage_totals("acme", DAY)
    assert not reserve(ledger)  # $1.00 reached
    assert ledger.usage_totals("acme", DAY).queries_today == 1  # the refusal counted nothing
    assert reserve(ledger, day=date(2026, 4, 1))  # a new month


def test_a_zero_quota_refuses_everything(ledger):
    assert not reserve(ledger, quota=0)
    assert ledger.usage_totals("acme", DAY).queries_today == 0


def test_concurrent_reservations_never_exceed_the_quota(ledger):
    results: list[bool] = []
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        for _ in range(10):
            results.append(reserve(ledger, quota=25, budget=100.0))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 25 and len(results) == 80
    assert ledger.usage_totals("acme", DAY).queries_today == 25


def test_store_batches_are_one_call(store):
    store.record_usage_many([UsageDelta("acme", DAY, 1, 10, 1, 0.5),
                             UsageDelta("acme", DAY, 1, 10, 1, 0.25),
                             UsageDelta("beta", DAY, 0, 0, 0, 1.0)])
    store.record_usage_many([])
    totals = store.usage_totals("acme", DAY)
    assert (totals.queries_today, totals.tokens_today) == (2, 22)
    assert totals.cost_month_usd == pytest.approx(0.75)


class FlakyStore:
    """A store whose batch writes fail while ``down`` (the database unreachable)."""

    def __init__(self, store):
        self.store, self.down, self.batches = store, False, 0

    def reserve_query(self, *args, **kwargs):
        return self.store.reserve_query(*args, **kwargs)

    def record_usage_many(self, deltas):
        if self.down:
            raise StoreUnavailableError("database down (test)")
        self.batches += 1
        self.store.record_usage_many(deltas)

    def usage_totals(self, *args):
        return self.store.usage_totals(*args)


def test_write_behind_groups_settlements_and_keeps_them_while_the_store_is_down(store):
    flaky = FlakyStore(store)
    behind = WriteBehindLedger(flaky, flush_interval=60)  # only explicit flushes here
    try:
        for _ in range(50):
            record(behind, "acme", DAY, 0.01, queries=0)
        assert behind.pending == 1 and flaky.batches == 0
        flaky.down = True
        with pytest.raises(StoreUnavailableError):
            behind.flush()
        assert behind.pending == 1  # kept for a retry
        flaky.down = False
        behind.flush()
        assert flaky.batches == 1 and behind.pending == 0
        assert store.usage_totals("acme", DAY).cost_month_usd == pytest.approx(0.5)
    finally:
        behind.close()


def test_write_behind_writes_on_its_own_and_on_close(store):
    behind = WriteBehindLedger(store, flush_interval=0.001)
    record(behind, "acme", DAY, 0.5, queries=0)
    for _ in range(500):  # the writer thread, not a read, writes it
        if store.usage_totals("acme", DAY).cost_month_usd:
            break
        threading.Event().wait(0.01)
    assert store.usage_totals("acme", DAY).cost_month_usd == pytest.approx(0.5)
    record(behind, "acme", DAY, 0.25, queries=0)
    behind.close()
    assert store.usage_totals("acme", DAY).cost_month_usd == pytest.approx(0.75)


def test_only_usage_writes_skip_the_wait_for_the_disk(store):
    """Config writes keep their durability; the ledger's laxer commit never leaks to them."""
    from m11_tenant.store import Change

    def config_write():
        store.write("acme", lambda _current: {"top_k": 3}, Change())

    reserve(store)
    if store.url.startswith("sqlite"):
        def level():
            return store.db.execute("PRAGMA synchronous").fetchone()[0]

        config_write()
        assert level() == 2  # FULL: the WAL is synced before the commit returns
        store.record_usage_many([UsageDelta("acme", DAY, 1)])
        assert level() == 1  # NORMAL: usage only
        config_write()
        assert level() == 2
    else:  # PostgreSQL, or the in-memory twin (no disk to wait for)
        store.record_usage_many([UsageDelta("acme", DAY, 1)])
        if store.url.startswith("postgres"):
            assert store._rows("SHOW synchronous_commit") == [("on",)]  # SET LOCAL ended there
        config_write()
    assert store.usage_totals("acme", DAY).queries_today == 2


def test_a_cost_alert_is_recorded_once(ledger):
    from m11_tenant.store import CostAlert

    alert = CostAlert("acme", "2026-03", 80, 4.2, 5.0, "2026-03-14T09:00:00+00:00")
    assert ledger.record_cost_alert(alert) is True
    assert ledger.record_cost_alert(alert) is False
    assert ledger.record_cost_alert(CostAlert("acme", "2026-04", 80, 4.1, 5.0,
                                              "2026-04-02T09:00:00+00:00")) is True
