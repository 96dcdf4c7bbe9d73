"""What the hardening costs per request: security headers, the text policy, log redaction.

In process, no server: the ``SecurityHeaders`` ASGI wrapper around a trivial app vs the
bare app; ``parse_json_object`` on a typical config body with the text-policy walk vs
plain ``json.loads``; the access-log filter on a line with and without a query string.
Each figure is the median of 5 runs of N calls, in microseconds per call (a GET /config
over HTTP costs about 1 ms, see bench/http_load.py).

    python bench/request_hygiene.py [--calls 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from m11_tenant.schema import DEFAULT_TEMPLATE, parse_json_object
from m11_tenant.text import json_text_errors
from m11_tenant.web.security import RedactingFilter, SecurityHeaders

BODY = json.dumps({"config": {"temperature": 0.3, "top_k": 8, "prompt_template": DEFAULT_TEMPLATE,
                              "prompt_variables": {"company": "Acme", "tone": "brief"},
                              "branding": {"logo_url": "https://cdn.example/logo.png"}},
                   "merge": True, "reason": "calmer answers (ticket 4411)"}).encode()


async def bare_app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b"{}"})


async def _noop(message):
    return None


async def _receive():
    return {"type": "http.request", "body": b""}


def per_call_us(fn, calls: int) -> float:
    runs = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        runs.append((time.perf_counter() - started) / calls * 1e6)
    return statistics.median(runs)


def asgi_us(app, calls: int) -> float:
    scope = {"type": "http", "path": "/config/acme", "headers": []}

    async def run() -> float:
        runs = []
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(calls):
                await app(scope, _receive, _noop)
            runs.append((time.perf_counter() - started) / calls * 1e6)
        return statistics.median(runs)

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20000)
    n = parser.parse_args().calls
    bare, wrapped = asgi_us(bare_app, n), asgi_us(SecurityHeaders(bare_app), n)
    print(f"ASGI call, trivial app: bare {bare:.2f} us, with SecurityHeaders {wrapped:.2f} us "
          f"(+{wrapped - bare:.2f} us per request)")
    loads = per_call_us(lambda: json.loads(BODY), n)
    strict = per_call_us(lambda: parse_json_object(BODY), n)
    parsed = json.loads(BODY)
    walk = per_call_us(lambda: json_text_errors(parsed), n)
    print(f"config body of {len(BODY)} bytes: json.loads {loads:.1f} us, parse_json_object "
          f"(caps, duplicates, digit cap, text policy) {strict:.1f} us, of which the text "
          f"policy walk {walk:.1f} us")
    filt = RedactingFilter()
    plain = logging.LogRecord("uvicorn.access", 20, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                              ("127.0.0.1:5", "GET", "/config/acme", "1.1", 200), None)
    query = logging.LogRecord("uvicorn.access", 20, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                              ("127.0.0.1:5", "GET", "/audit?tenant_id=a&api_key=s", "1.1", 200),
                              None)
    print(f"access-log filter: no query {per_call_us(lambda: filt.filter(plain), n):.2f} us, "
          f"with a query {per_call_us(lambda: filt.filter(query), n):.2f} us")
    print(f"reproduce: python bench/request_hygiene.py --calls {n}")


if __name__ == "__main__":
    main()
