"""Conflict resolution: per-field and whole-config last-write-wins, tombstones, and the
property every region relies on -- any order, any duplicates, one result."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from m11_tenant.errors import ConfigValidationError
from m11_tenant.regions.clock import HybridLogicalClock, Stamp
from m11_tenant.regions.merge import (
    EXISTS,
    STRATEGIES,
    WHOLE,
    ChangeEvent,
    ReplicaState,
    apply_event,
    check_strategy,
    detect_conflicts,
    local_delete,
    local_write,
    resolve,
)
from m11_tenant.schema import TenantConfig, apply_update

DEFAULTS = TenantConfig().model_dump()


def write(state, node, wall, updates, strategy="field-merge"):
    """What a region does on a local write: apply the updates to what it stores, stamp."""
    stored = resolve(state, strategy).config
    base = TenantConfig() if stored is None else TenantConfig.model_validate(stored)
    config = apply_update(base, updates, merge=True).model_dump()
    return local_write(state, "acme", config, Stamp(wall, 0, node), wall)


def applied(*events, state=None):
    state = state or ReplicaState()
    for event in events:
        state = apply_event(state, event)
    return state


def test_a_write_stamps_only_the_fields_it_changed():
    event = write(ReplicaState(), "us", 100, {"temperature": 0.2,
                                              "branding": {"primary_color": "#000000"}})
    assert set(event.fields) == {"temperature", "branding.primary_color", EXISTS}
    assert event.seen == {"temperature": None, "branding.primary_color": None, EXISTS: None,
                          WHOLE: None}
    assert event.config["temperature"] == 0.2 and event.origin == "us"


def test_field_merge_keeps_both_changes_to_different_fields():
    base = write(ReplicaState(), "us", 100, {"temperature": 0.2})
    state = applied(base)
    us = write(state, "us", 200, {"temperature": 0.3})
    eu = write(state, "eu", 210, {"top_k": 8})
    for order in ([us, eu], [eu, us]):
        config = resolve(applied(base, *order), "field-merge").config
        assert (config["temperature"], config["top_k"]) == (0.3, 8)


def test_lww_keeps_the_newest_whole_config():
    state = applied(write(ReplicaState(), "us", 100, {"temperature": 0.2}))
    us = write(state, "us", 200, {"temperature": 0.3}, "lww")
    eu = write(state, "eu", 210, {"top_k": 8}, "lww")
    for order in ([us, eu], [eu, us]):
        config = resolve(applied(*order, state=state), "lww").config
        assert (config["temperature"], config["top_k"]) == (0.2, 8)  # us's change is lost


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_the_same_field_written_twice_the_newer_stamp_wins_and_is_logged(strategy):
    us = write(ReplicaState(), "us", 300, {"alpha": 0.1}, strategy)
    eu = write(ReplicaState(), "eu", 200, {"alpha": 0.9}, strategy)  # older though later here
    at_eu = applied(eu)
    assert resolve(apply_event(at_eu, us), strategy).config["alpha"] == 0.1
    [conflict] = detect_conflicts(at_eu, us, strategy)
    assert conflict.field == ("alpha" if strategy == "field-merge" else WHOLE)
    assert (conflict.winner.origin, conflict.loser.origin) == ("us", "eu")
    # The region that sees them the other way round logs the very same conflict.
    assert detect_conflicts(applied(us), eu, strategy)[0].key == conflict.key


def test_overriding_a_change_you_had_seen_is_not_a_conflict():
    first = write(ReplicaState(), "us", 100, {"alpha": 0.1})
    state = applied(first)
    second = write(state, "eu", 200, {"alpha": 0.9})
    assert second.seen["alpha"] == first.stamp
    assert detect_conflicts(state, second, "field-merge") == []


def test_two_regions_writing_the_same_value_do_not_conflict():
    us = write(ReplicaState(), "us", 100, {"alpha": 0.1})
    eu = write(ReplicaState(), "eu", 200, {"alpha": 0.1})
    assert detect_conflicts(applied(us), eu, "field-merge") == []


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_delete_is_a_tombstone_that_beats_older_writes_only(strategy):
    created = write(ReplicaState(), "us", 100, {"temperature": 0.2}, strategy)
    deleted = local_delete(applied(created), "acme", Stamp(200, 0, "eu"), 200)
    assert resolve(applied(deleted, created), strategy).config is None  # order irrelevant
    later = write(applied(created, deleted), "ap", 300, {"top_k": 3}, strategy)
    config = resolve(applied(later, deleted, created), strategy).config
    assert config["top_k"] == 3
    assert config["temperature"] == DEFAULTS["temperature"]  # the delete reset it


def test_a_write_concurrent_with_a_delete_is_logged():
    created = write(ReplicaState(), "us", 100, {"temperature": 0.2})
    state = applied(created)
    deleted = local_delete(state, "acme", Stamp(300, 0, "eu"), 300)
    update = write(state, "us", 200, {"top_k": 3})
    [conflict] = detect_conflicts(applied(created, deleted), update, "field-merge")
    assert conflict.field == WHOLE and conflict.winner.value is None
    assert resolve(applied(created, deleted, update), "field-merge").config is None


def test_fields_that_do_not_validate_together_fall_back_to_the_newest_config():
    base = applied(write(ReplicaState(), "us", 100, {"top_k": 10}))
    us = write(base, "us", 200, {"top_k": 3})  # valid alone
    eu = write(base, "eu", 300, {"rerank_top_n": 5})  # valid alone, not with top_k=3
    merged = resolve(applied(us, eu, state=base), "field-merge")
    assert merged.fell_back and merged.refused["top_k"] == 3
    assert merged.config == eu.config  # the newest whole config, which does validate


def test_applying_an_event_twice_changes_nothing():
    event = write(ReplicaState(), "us", 100, {"temperature": 0.2})
    once = applied(event)
    assert applied(event, state=once) == once


def test_events_and_states_survive_their_text_form():
    event = write(ReplicaState(), "us", 100, {"branding": {"logo_url": "https://x.example/l.png"}})
    assert ChangeEvent.from_json(event.to_json()) == event
    deleted = local_delete(applied(event), "acme", Stamp(200, 1, "eu"), 200)
    assert ChangeEvent.from_json(deleted.to_json()) == deleted
    state = applied(event, deleted)
    assert ReplicaState.from_json(state.to_json()) == state
    assert ReplicaState.from_json(None) == ReplicaState()


def test_unknown_strategy_is_refused_with_the_choices():
    assert check_strategy("lww") == "lww"
    with pytest.raises(ConfigValidationError, match="choose one of: lww, field-merge"):
        check_strategy("merge")


# ---------------------------------------------------------------------------- property

FIELD_VALUES = {
    "temperature": [0.0, 0.5, 1.9],
    "top_k": [1, 3, 10],
    "rerank_top_n": [None, 2, 5],
    "alpha": [0.0, 1.0],
    "branding.primary_color": ["#000000", "#FFFFFF"],
    "prompt_variables": [{}, {"company": "Acme"}],
}
NODES = ["us", "eu", "ap"]

operation = st.tuples(
    st.sampled_from(NODES),  # where it happens
    st.one_of(st.just("delete"),
              st.dictionaries(st.sampled_from(sorted(FIELD_VALUES)), st.integers(0, 2),
                              min_size=1, max_size=3)),
    st.integers(-40, 40),  # that node's clock error, ms
    st.lists(st.integers(0, 200), max_size=4),  # earlier events it has received first
)


def _updates(choice):
    updates = {}
    for name, index in choice.items():
        values = FIELD_VALUES[name]
        value = values[index % len(values)]
        if name.startswith("branding."):
            updates["branding"] = {name.removeprefix("branding."): value}
        else:
            updates[name] = value
    return updates


def _history(ops, strategy):
    """Events as regions really produce them: each writes on what it has received so far."""
    states = {node: ReplicaState() for node in NODES}
    clocks = {node: HybridLogicalClock(node) for node in NODES}
    events = []
    for step, (node, action, skew, received) in enumerate(ops):
        physical = 1000 + step * 10 + skew
        for index in received:
            if events:
                event = events[index % len(events)]
                clocks[node].observe(event.stamp, physical)
                states[node] = apply_event(states[node], event)
        stamp = clocks[node].now(physical)
        if action == "delete":
            if resolve(states[node], strategy).config is None:
                continue
            event = local_delete(states[node], "acme", stamp, physical)
        else:
            stored = resolve(states[node], strategy).config
            base = TenantConfig() if stored is None else TenantConfig.model_validate(stored)
            try:
                config = apply_update(base, _updates(action), merge=True).model_dump()
            except ConfigValidationError:
                continue  # the region refuses an invalid write; nothing is committed
            event = local_write(states[node], "acme", config, stamp, physical)
        states[node] = apply_event(states[node], event)
        events.append(event)
    return events


@pytest.mark.parametrize("strategy", STRATEGIES)
@settings(max_examples=150, deadline=None)
@given(ops=st.lists(operation, min_size=1, max_size=12), seed=st.integers(0, 2**32 - 1))
def test_any_order_with_duplicates_converges_to_one_state(strategy, ops, seed):
    events = _history(ops, strategy)
    rng = random.Random(seed)
    results = []
    for _region in NODES:  # each region gets every event, shuffled, some of them twice
        delivery = events + rng.sample(events, k=rng.randint(0, len(events)))
        rng.shuffle(delivery)
        results.append(applied(*delivery))
    assert all(state == results[0] for state in results)
    assert len({repr(resolve(state, strategy).config) for state in results}) == 1
    final = resolve(results[0], strategy).config
    if final is not None:  # whatever the interleaving, every region stores a valid config
        TenantConfig.model_validate(final)
