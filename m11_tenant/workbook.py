"""Helpers the notebooks share: a clean sandbox per notebook, a fixed clock, stable printing.

Every notebook starts from nothing: its own temporary SQLite database, its own
``fakeredis.FakeServer`` (so no other notebook's cache can answer), a clock that ticks a
fixed minute per write (so stored timestamps are the same on every run), and a seeded
random source. nbval compares printed output character by character, so the printers here
print ``model_dump()`` and sorted JSON, never reprs with addresses.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
import secrets
import tempfile
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import fakeredis
from pydantic import BaseModel

from m11_tenant.cache import NearCache
from m11_tenant.errors import TenantConfigError
from m11_tenant.factory import open_repository
from m11_tenant.repository import ResolvedConfig, TenantConfigRepository
from m11_tenant.schema import validate_config
from m11_tenant.seed import seed_tenants
from m11_tenant.settings import Settings, load_settings
from m11_tenant.stats import summarize

if TYPE_CHECKING:
    from m11_tenant.rag.pipeline import GenerationMode, RagPipeline

__all__ = [
    "Sandbox",
    "StepClock",
    "measure_paths",
    "open_sandbox",
    "plain",
    "plot_scaling",
    "scaling_run",
    "short_tracebacks",
    "show",
    "show_record",
    "zipf_weights",
]

WORKBOOK_EPOCH = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


class StepClock:
    """A clock for stored timestamps: ``start``, then one ``step`` later on every call.

    Injected into the store instead of ``datetime.now``, so history and audit times read
    like a real sequence of events yet are identical on every run of a notebook.
    """

    def __init__(self, start: datetime = WORKBOOK_EPOCH, step: timedelta = timedelta(minutes=1)):
        self.start, self.step, self.calls = start, step, 0
        self._frozen = 0

    def __call__(self) -> datetime:
        now = self.start + self.calls * self.step
        if not self._frozen:
            self.calls += 1
        return now

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """Time stands still inside: opening a store (its migrations read the clock) must
        not shift the timestamps a notebook prints when a migration is added."""
        self._frozen += 1
        try:
            yield
        finally:
            self._frozen -= 1


@dataclasses.dataclass
class Sandbox:
    """One notebook's private world: a temp directory, a fake Redis server, a clock, a repo.

    ``repo`` is the repository the notebook mostly uses. :meth:`open_repository` opens
    more of them on the same database and/or the same Redis server, which is how the
    notebooks play "two processes" or "two test runs".
    """

    directory: Path
    server: fakeredis.FakeServer
    clock: StepClock
    settings: Settings
    rng: random.Random
    admin_key: str = dataclasses.field(default_factory=lambda: "m11a_" + secrets.token_urlsafe(32),
                                       repr=False)
    repo: TenantConfigRepository = dataclasses.field(init=False)
    _repos: list[TenantConfigRepository] = dataclasses.field(default_factory=list, repr=False)
    _servers: list[fakeredis.FakeServer] = dataclasses.field(default_factory=list, repr=False)
    _cleanup: Callable[[], None] = dataclasses.field(init=False, repr=False)

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.directory / 'tenants.db'}"

    def redis_client(self, server: fakeredis.FakeServer | None = None) -> fakeredis.FakeRedis:
        """A new client on this sandbox's fake Redis server (or on ``server``)."""
        return fakeredis.FakeRedis(server=server or self.server)

    def open_repository(self, *, database: str = "shared", redis: str = "shared",
                        ttl: int | None = None, near: str = "pubsub") -> TenantConfigRepository:
        """Another repository: ``database``/``redis`` are ``"shared"`` or ``"own"``.

        ``"own"`` database means a second SQLite file in the sandbox; ``"own"`` Redis a
        fresh ``FakeServer`` that nothing else talks to; ``redis="none"`` no cache at all.
        ``near`` is the in-process near cache: ``"pubsub"`` (kept fresh by invalidations
        published on Redis, the default), ``"no-pubsub"`` (a near cache that hears of no
        other process's writes: failure mode 3) or ``"off"``. ``ttl`` sets both caches' TTL.
        """
        if database == "shared":
            url = self.database_url
        else:
            url = f"sqlite:///{self.directory / f'tenants-{self.rng.getrandbits(32):08x}.db'}"
        server = self.server if redis == "shared" else fakeredis.FakeServer()
        client = None if redis == "none" else self.redis_client(server)
        update: dict[str, Any] = {} if ttl is None else {"redis_ttl": ttl, "near_cache_ttl": ttl}
        if near != "pubsub":
            update["near_cache_size"] = 0
        settings = self.settings.model_copy(update=update)
        with self.clock.frozen():
            repo = open_repository(url, "" if client is None else None, redis_client=client,
                                   settings=settings, clock=self.clock)
        if near == "no-pubsub" and client is not None:
            cache = NearCache(self.settings.near_cache_size, settings.near_cache_ttl)
            cache.enable()  # no listener will ever switch it on, nor tell it of writes
            repo = repo.with_near_cache(cache)
        self._repos.append(repo)
        self._servers.append(server)
        return repo

    def _listening(self, server: fakeredis.FakeServer | None = None
                   ) -> list[TenantConfigRepository]:
        return [repo for repo, on in zip(self._repos, self._servers, strict=True)
                if repo.listener is not None and on is (server or self.server)]

    def wait_for_invalidation(self, tenant_id: str, version: int) -> None:
        """Wait until every listening repository on this sandbox's Redis has heard that
        ``tenant_id`` reached ``version`` (pub/sub is asynchronous: milliseconds here)."""
        _wait(lambda: all(repo.near.newest_version(tenant_id) >= version
                          for repo in self._listening()),
              f"invalidation of {tenant_id} v{version}")

    def expire(self, repo: TenantConfigRepository, tenant_id: str) -> None:
        """Drop ``tenant_id`` from ``repo``'s near cache and from Redis, as a TTL would."""
        if repo.near is not None:
            repo.near.invalidate(tenant_id)
        if repo.cache.client is not None:
            repo.cache.client.delete(repo.cache.key(tenant_id))

    def pipeline(self, repo: TenantConfigRepository | None = None, ledger: Any = None, *,
                 generation: GenerationMode = "offline") -> RagPipeline:
        """A RAG pipeline over ``repo`` (default the sandbox's), with a fixed date.

        Offline by default: no provider is called even if a key is set, so the notebooks
        give the same answers everywhere. ``generation="auto"`` calls the providers the
        sandbox's settings configure (a key in the environment or ``.env``). Usage goes to
        ``ledger`` (default in memory).
        """
        from m11_tenant.rag import InMemoryLedger, RagPipeline  # numpy and the index: on use

        return RagPipeline(repo or self.repo, ledger or InMemoryLedger(), generation=generation,
                           settings=self.settings, clock=lambda: self.clock.start)

    def api_client(self) -> Any:
        """FastAPI's ``TestClient`` on the management API over the sandbox's repository.

        In process, no server, no port: requests go straight to the app. Usage is recorded
        in the sandbox's database; rate-limit windows use the sandbox's fixed date. The
        admin key is :attr:`admin_key`, a strong random one generated for this sandbox
        (never printed: outputs stay the same on every run).
        """
        admin_key = self.admin_key
        from fastapi.testclient import TestClient

        from m11_tenant.app import create_app

        settings = self.settings.model_copy(update={"m11_admin_key": admin_key})
        app = create_app(self.repo, settings=settings,
                         pipeline=self.pipeline(ledger=self.repo.ledger),
                         clock=lambda: self.clock.start.timestamp())
        return TestClient(app, raise_server_exceptions=False)

    def unique_tenant_id(self, prefix: str = "tenant") -> str:
        """``prefix-xxxxxxxx``: unique per call, the same sequence on every run (seeded)."""
        return f"{prefix}-{self.rng.getrandbits(32):08x}"

    def redis_down(self) -> None:
        """Every client of this sandbox's fake Redis now gets ``ConnectionError``; returns
        once every listening repository has noticed (its near cache is then off)."""
        listening = self._listening()
        self.server.connected = False
        _wait(lambda: all(repo.listener.status != "ok" for repo in listening),
              "the listeners to notice Redis is down")

    def redis_up(self) -> None:
        """Redis answers again; returns once every repository has reconnected."""
        self.server.connected = True
        for repo, server in zip(self._repos, self._servers, strict=True):
            if server is self.server:
                repo.cache.ping()
        _wait(lambda: all(repo.listener.status == "ok" for repo in self._listening()),
              "the listeners to resubscribe")

    @staticmethod
    def database_down(repo: TenantConfigRepository) -> None:
        """Close ``repo``'s SQLite connection: every database call now fails like a lost one.
        :meth:`database_up` brings it back."""
        repo.disconnect()

    @staticmethod
    def database_up(repo: TenantConfigRepository) -> None:
        """Reconnect ``repo`` to its SQLite file after :meth:`database_down` (a no-op when
        it is up), as a database that comes back after an outage: nothing stored was lost."""
        repo.reconnect()

    def close(self) -> None:
        """Close every repository of the sandbox and delete its temporary directory."""
        self._cleanup()


def _wait(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(0.005)


def _remove(repos: list[TenantConfigRepository], tmp: tempfile.TemporaryDirectory[str]) -> None:
    for repo in repos:
        repo.close()
    tmp.cleanup()


def open_sandbox(*, seed: bool = True, ttl: int = 300, history_limit: int = 10,
                 random_seed: int = 11, near_cache_size: int = 10_000) -> Sandbox:
    """A clean sandbox; with ``seed`` the example tenants of ``data/tenants.json`` are stored.

    Settings come from the environment and ``.env`` like everywhere else (a provider key
    there is what :meth:`Sandbox.pipeline` with ``generation="auto"`` calls), except the
    sandbox's own storage and cache, given here: a ``DATABASE_URL`` or ``REDIS_URL`` in the
    learner's shell cannot leak into a notebook. The admin key is the sandbox's own.
    """
    tmp = tempfile.TemporaryDirectory(prefix="m11-notebook-")
    settings = load_settings(database_url="sqlite:///unused.db", redis_url=None, redis_ttl=ttl,
                             history_limit=history_limit, near_cache_size=near_cache_size,
                             near_cache_ttl=float(ttl), warm_start=False, m11_admin_key=None)
    box = Sandbox(Path(tmp.name), fakeredis.FakeServer(), StepClock(), settings,
                  random.Random(random_seed))
    box.repo = box.open_repository()
    box._cleanup = weakref.finalize(box, _remove, box._repos, tmp)
    if seed:
        seed_tenants(box.repo)
    return box


# --------------------------------------------------------------------------- tracebacks

PACKAGE_DIR = Path(__file__).resolve().parent


def short_tracebacks() -> None:
    """In a notebook, show the package's deliberate errors in three lines, not sixty.

    A failure cell is the lesson: what the learner needs is the error, the line of their
    cell that caused it, and the package function that refused. IPython's full traceback
    walks through the repository, the store and the framework in between. Other errors
    (bugs, typos) keep IPython's full traceback. Outside IPython this does nothing.
    """
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - the notebooks always have IPython
        return
    shell = get_ipython()
    if shell is not None:
        shell.set_custom_exc((TenantConfigError,), _short_traceback)


def _short_traceback(shell: Any, etype: type[BaseException], value: BaseException,
                     tb: Any, tb_offset: int | None = None) -> list[str]:
    """IPython's custom-exception hook: the structured traceback as a few lines."""
    lines = _traceback_lines(etype, value, tb)
    shell._showtraceback(etype, value, lines)
    return lines


def _traceback_lines(etype: type[BaseException], value: BaseException,
                          tb: Any) -> list[str]:
    """Where the error was triggered (the last frame of the learner's code before the call
    entered the package), where it was raised (the last frame inside the package), and
    the error itself. Frames of the standard library that the package calls through (a
    worker thread running a query) are neither."""
    frames = traceback.extract_tb(tb)
    inside = [f for f in frames if Path(f.filename).resolve().is_relative_to(PACKAGE_DIR)]
    entered = frames.index(inside[0]) if inside else len(frames)
    outside = frames[:entered]
    lines = []
    if outside:
        lines.append(f"  your code, line {outside[-1].lineno}: {(outside[-1].line or '').strip()}")
    if inside:
        where = Path(inside[-1].filename).resolve().relative_to(PACKAGE_DIR.parent)
        lines.append(f"  raised in {inside[-1].name} ({where}, line {inside[-1].lineno})")
    lines.append(f"{etype.__name__}: {value}")
    return lines


# --------------------------------------------------------------------------- printing


def plain(value: Any) -> Any:
    """Turn models, dataclasses, sets and tuples into plain JSON-ready values."""
    if isinstance(value, BaseModel):
        return plain(value.model_dump())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return sorted(plain(v) for v in value)
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def show(value: Any, fields: Iterable[str] | None = None) -> None:
    """Print a model, dataclass or mapping as sorted JSON, optionally only some ``fields``."""
    data = plain(value)
    if fields is not None and isinstance(data, dict):
        data = {name: data.get(name) for name in fields}
    print(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False))


def show_record(record: ResolvedConfig, fields: Sequence[str] = ()) -> None:
    """One line: tenant, version, where it came from, and the chosen config fields."""
    config = record.config.model_dump()
    shown = ", ".join(f"{name}={config[name]!r}" for name in fields)
    flag = " DEGRADED" if record.degraded else ""
    print(f"{record.tenant_id} v{record.version} from {record.source}{flag}"
          + (f": {shown}" if shown else ""))


# --------------------------------------------------------------------------- scaling run


def _config_variants(rng: random.Random, count: int = 8) -> list[dict[str, Any]]:
    """A few distinct valid configs (~1 KB each), validated once each."""
    return [validate_config({
        "plan": "pro", "model": rng.choice(["gpt-4-turbo", "claude-3-sonnet"]),
        "temperature": round(rng.uniform(0, 1.5), 2), "max_tokens": rng.randrange(100, 2000),
        "top_k": rng.randrange(3, 15), "alpha": round(rng.random(), 2),
        "prompt_variables": {"company_name": f"Company {rng.randrange(10_000)}"},
        "prompt_template": "You answer for {company_name}.\n\n{context}\n\nQ: {query}",
    }).model_dump() for _ in range(count)]


def zipf_weights(count: int, exponent: float = 1.1) -> list[float]:
    """Tenant popularity: a few tenants get most of the traffic, as on real platforms."""
    return [1 / (rank + 1) ** exponent for rank in range(count)]


MIN_P99_SAMPLES = 100  # fewer samples than this give no p99 worth printing


def _progress(items: Sequence[Any], show: bool, **kwargs: Any) -> Any:
    """``items``, with a tqdm progress bar (a widget in a notebook) when ``show``."""
    if not show:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, **kwargs)


class _BackgroundWriter:
    """Another process's admin saving configs while the measured process reads: a thread
    updating random tenants through its own repository (same database and Redis, so every
    write invalidates the reader's caches through pub/sub), as fast as it can."""

    def __init__(self, repo: TenantConfigRepository, tenant_ids: Sequence[str], limit: int,
                 seed: int):
        self.repo, self.ids, self.limit = repo, list(tenant_ids), limit
        self.rng, self.done, self.errors = random.Random(seed), 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _BackgroundWriter:
        self.started = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.seconds = time.perf_counter() - self.started

    def running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set() and self.done < self.limit:
            try:
                self.repo.update_config(self.rng.choice(self.ids),
                                        {"top_k": self.rng.randrange(3, 15)},
                                        actor="bench-writer", reason="concurrent write")
                self.done += 1
            except TenantConfigError:
                self.errors += 1


def scaling_run(tenant_counts: Sequence[int] = (100, 1200), reads: int = 3000,
                warmup: int = 1000, near_cache_size: int = 1000, writes: int = 0,
                seed: int = 7, progress: bool = False) -> list[dict[str, Any]]:
    """Store N tenants, warm the caches, then measure ``reads`` Zipf-distributed reads.

    Each N gets a fresh sandbox whose near cache holds ``near_cache_size`` tenants (past
    that, the least recently read are evicted and come back from Redis). Warm-up reads
    every tenant once, then ``warmup`` Zipf reads; none of them is counted, so the figures
    are the steady state. The seeded read sequence makes every count exact and repeatable.
    With ``writes`` > 0, a second measurement (``with_writes``) reads for as long as
    another repository takes to save that many configs (as fast as it can), so
    invalidations and fresh database reads are part of it (its counts vary from run to
    run). Latencies (µs, per source) always vary; a p99 needs samples, so it is ``None``
    for a source read fewer than 100 times.
    """
    results = []
    for count in _progress(tenant_counts, progress, desc="tenant counts"):
        rng = random.Random(seed)
        variants = _config_variants(rng)
        box = open_sandbox(seed=False, near_cache_size=near_cache_size)
        try:
            ids = [f"scale-{i:05d}" for i in range(count)]
            for tenant_id in _progress(ids, progress, desc=f"storing {count} tenants",
                                       leave=False):
                config = rng.choice(variants)
                box.repo.write_unvalidated(tenant_id, config, actor="bench",
                                           reason="scaling run")
            weights = zipf_weights(count)
            for tenant_id in ids + rng.choices(ids, weights=weights, k=warmup):
                box.repo.get_record(tenant_id)
            result = {"tenants": count, "near_cache_size": near_cache_size,
                      **_measure(box.repo, rng.choices(ids, weights=weights, k=reads))}
            if writes:
                with _BackgroundWriter(box.open_repository(), ids, writes, seed) as writer:
                    live = _measure(box.repo, _reads_while(writer.running, rng, ids, weights))
                result["with_writes"] = {**live, "writes": writer.done,
                                         "writes_per_s": round(writer.done / writer.seconds)}
            results.append(result)
        finally:
            box.close()
    return results


MAX_LIVE_READS = 200_000  # a bound on the live phase, whatever the writer's pace


def _reads_while(running: Callable[[], bool], rng: random.Random, ids: Sequence[str],
                 weights: Sequence[float]) -> Iterator[str]:
    """Zipf-distributed tenant ids for as long as ``running()`` (at most MAX_LIVE_READS)."""
    for _ in range(MAX_LIVE_READS // 100):
        if not running():
            return
        yield from rng.choices(ids, weights=weights, k=100)


def _measure(repo: TenantConfigRepository, sequence: Iterable[str]) -> dict[str, Any]:
    """Read ``sequence`` through ``repo``: where each read came from, and how long it took."""
    before = dict(repo.get_stats()["sources"])
    by_source: dict[str, list[float]] = {}
    for tenant_id in sequence:
        started = time.perf_counter()
        record = repo.get_record(tenant_id)
        by_source.setdefault(record.source, []).append((time.perf_counter() - started) * 1e6)
    after = repo.get_stats()["sources"]
    sources = {source: after[source] - before.get(source, 0) for source in sorted(after)}
    hits = sources.get("near", 0) + sources.get("cache", 0)
    total = sum(sources.values())
    return {"reads": total, "hits": hits, "misses": total - hits,
            "hit_rate": round(hits / total, 4) if total else 0.0,
            "sources": {source: n for source, n in sources.items() if n},
            "latency_us": {source: _enough(summarize(values))
                           for source, values in sorted(by_source.items())}}


def _enough(summary: dict[str, float]) -> dict[str, float | None]:
    """A latency summary without the percentiles its sample count cannot support."""
    if summary["samples"] < MIN_P99_SAMPLES:
        return {**summary, "p99_us": None}
    return summary


def _time_us(call: Callable[[], Any], repeat: int) -> dict[str, float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1e6)
    return {key: round(value, 2) for key, value in summarize(samples).items()}


def measure_paths(tenant_id: str = "enterprise-corp", repeat: int = 300,
                  redis_url: str | None = None) -> dict[str, dict[str, float]]:
    """Time each step of a config read on this machine: p50/p95/p99 in µs per path.

    ``near_cache_hit`` is a whole ``get_record`` answered by the in-process near cache (a
    validated object in a dict); ``redis_hit`` the same with the near cache off, answered
    from a warm (fake) Redis entry: a Redis GET plus ``json_parse`` plus ``validate`` (the
    injection guard included); ``sqlite_read`` is the database row read a miss adds.
    With ``redis_url`` (e.g. ``redis://127.0.0.1:6379/15``) a GET on that real Redis is
    timed too.
    Reproduce: ``python -c "from m11_tenant.workbook import measure_paths, show;
    show(measure_paths())"``.
    """
    import json as json_module

    box = open_sandbox()
    try:
        repo, no_near = box.repo, box.open_repository(near="off")
        raw = json_module.dumps(repo.get_record(tenant_id).config.model_dump())
        no_near.get_record(tenant_id)
        client = box.redis_client()
        client.set("bench:payload", raw)
        results = {
            "near_cache_hit": _time_us(lambda: repo.get_record(tenant_id), repeat * 10),
            "redis_hit": _time_us(lambda: no_near.get_record(tenant_id), repeat),
            "fakeredis_get": _time_us(lambda: client.get("bench:payload"), repeat),
            "json_parse": _time_us(lambda: json_module.loads(raw), repeat),
            "validate": _time_us(lambda: validate_config(json_module.loads(raw)), repeat),
            "sqlite_read": _time_us(lambda: repo.get_stored(tenant_id), repeat),
        }
        if redis_url:
            import redis

            real = redis.Redis.from_url(redis_url)
            key = f"m11-workbook-bench:{box.unique_tenant_id()}"
            real.set(key, raw)
            try:
                results["real_redis_get"] = _time_us(lambda: real.get(key), repeat)
            finally:
                real.delete(key)
                real.close()
        return results
    finally:
        box.close()


def plot_scaling(results: Sequence[dict[str, Any]]) -> Any:
    """Two panels: load latency percentiles by source, and cache hit rate, vs tenant count."""
    import matplotlib.pyplot as plt

    counts = [r["tenants"] for r in results]
    fig, (lat, hit) = plt.subplots(1, 2, figsize=(11, 4))
    for source, style in (("near", ":"), ("cache", "-"), ("database", "--")):
        for pct, marker in (("p50_us", "o"), ("p95_us", "s"), ("p99_us", "^")):
            values = [r["latency_us"].get(source, {}).get(pct) for r in results]
            values = [float("nan") if v is None else v for v in values]  # too few samples
            if any(v == v for v in values):
                lat.plot(counts, values, style, marker=marker, label=f"{source} {pct[:3]}")
    lat.set(xscale="log", yscale="log", xlabel="tenants", ylabel="get_record latency (µs)",
            title="Config-load latency percentiles")
    lat.legend(fontsize=8)
    hit.plot(counts, [100 * r["hit_rate"] for r in results], marker="o")
    hit.set(xscale="log", ylim=(0, 100), xlabel="tenants", ylabel="cache hit rate (%)",
            title=f"Steady-state hit rate, {results[0]['reads']} Zipf reads after warm-up")
    fig.tight_layout()
    plt.close(fig)  # shown once, as the cell's value, not again by the inline backend
    return fig
