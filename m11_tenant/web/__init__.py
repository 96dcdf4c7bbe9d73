"""The web kernel the JSON API and the HTML console share.

``context`` (what every route needs), ``auth`` (keys and the caller), ``errors`` (the one
error table), ``body`` (the one capped body reader), ``security`` (headers, log redaction),
``ratelimit``, ``metrics``, ``settings`` (the server's knobs), ``server`` (uvicorn's
protocol with a header deadline) and ``change_safety`` (replay, explain, the query log).
Nothing here imports :mod:`m11_tenant.api`, :mod:`m11_tenant.console` or
:mod:`m11_tenant.app`: they build on it.
"""
