"""The key index (keyindex.py): lookups answer what a plain dict of every key would, newest
first, within the time window and the result limit, across a reopen of the store; memory is
bounded (the oldest half goes past ``entries_max``)."""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.rocket.broker.keyindex import RESULTS_MAX, KeyIndex
from adapters.rocket.message import PROPERTY_KEYS, PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX
from adapters.rocket.remoting.command import encode_properties
from logstore import LogConfig, SimClock, SimIO, Store

CONFIG = LogConfig(flush="async")


async def open_index(io: SimIO) -> tuple[Store, KeyIndex]:
    store = await Store.open("/s", io=io, clock=SimClock())
    index = KeyIndex(store, CONFIG)
    await index.open([])
    return store, index


def reference(adds: list[tuple[str, int, int]], key: str, begin: int, end: int, limit: int) -> list[int]:
    return [phys for k, phys, ts in reversed(adds) if k == key and begin <= ts <= end][:limit]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from([f"T#k{i}" for i in range(12)]), st.integers(0, 100)), max_size=200),
       st.integers(0, 100), st.integers(0, 100), st.integers(1, 80))
def test_lookups_match_a_dict_of_every_key_and_survive_a_reopen(
        keys: list[tuple[str, int]], begin: int, span: int, limit: int) -> None:
    adds = [(k, 1000 + i, ts) for i, (k, ts) in enumerate(keys)]

    async def body() -> None:
        io = SimIO()
        store, index = await open_index(io)
        for k, phys, ts in adds:
            index.add([k], phys, ts)
        assert len(index) == len(adds)
        for key in {k for k, _p, _t in adds} | {"T#absent"}:
            want = reference(adds, key, begin, begin + span, min(limit, RESULTS_MAX))
            assert index.lookup(key, begin, begin + span, limit) == want
        await index.close()
        await store.close()
        store, index = await open_index(io)
        for key in {k for k, _p, _t in adds}:
            assert index.lookup(key, 0, 10**9, RESULTS_MAX) == reference(adds, key, 0, 10**9, RESULTS_MAX)
        await index.close()
        await store.close()

    asyncio.run(body())


def test_past_its_bound_the_oldest_half_is_forgotten() -> None:
    async def body() -> None:
        store, index = await open_index(SimIO())
        index.entries_max = 1000
        for i in range(1001):
            index.add([f"T#k{i}"], i, i)
        assert len(index) == 500
        assert index.lookup("T#k0", 0, 10**9, 10) == []
        assert index.lookup("T#k1000", 0, 10**9, 10) == [1000]
        assert index.lookup("T#k501", 0, 10**9, 10) == [501]
        assert index.lookup("T#k500", 0, 10**9, 10) == []
        await index.close()
        await store.close()

    asyncio.run(body())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(4, 60), st.lists(st.integers(0, 45), min_size=1, max_size=12))
def test_appends_across_chunks_keep_the_newest_half_past_the_bound(entries_max: int, sizes: list[int]) -> None:
    """Entries live in chunks of entries_max // 2: one add_many may fill one and start the next,
    and past the bound whole chunks go and the next is cut in front, leaving the newest half."""
    async def body() -> None:
        store, index = await open_index(SimIO())
        index.entries_max = entries_max
        added: list[str] = []
        count = 0  # the model: past entries_max, the newest entries_max // 2 stay
        for n in sizes:
            keys = [f"T#k{len(added) + i}" for i in range(n)]
            index.add_many(keys, [1000 + len(added) + i for i in range(n)], 7)
            added += keys
            count += n
            if count > entries_max:
                count = entries_max // 2
        held = added[len(added) - count:]
        assert len(index) == count
        for i, key in enumerate(added):
            assert index.lookup(key, 0, 10, 5) == ([1000 + i] if key in held else [])
        await index.close()
        await store.close()

    asyncio.run(body())


def test_entries_added_later_are_indexed_in_order_before_anything_reads_or_persists() -> None:
    """add_later keeps an append's keys and mark aside; drain_soon's callback, or any other
    call first (a lookup, an add, a mark, a flush), indexes them in the order added."""
    def props(uniq: str, keys: str) -> str:
        return encode_properties({PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX: uniq, PROPERTY_KEYS: keys})

    async def body() -> None:
        io = SimIO()
        store, index = await open_index(io)
        index.add_later("T", [props("U1", "a b"), props("U2", "b")], 500, 7, log_id=3, below=12)
        assert index._count == 0  # nothing indexed yet
        assert index.lookup("T#b", 0, 100, 10) == [501, 500]  # the lookup drained first
        assert index.lookup("T#U2", 0, 100, 10) == [501]
        index.add_later("T", [props("U3", "a")], 502, 8, log_id=3, below=13)
        index.drain_soon()
        index.drain_soon()  # one callback
        await asyncio.sleep(0)
        assert index._count == 7 and index._watermarks[3] == 13  # U1 a b, U2 b, U3 a
        index.add_later("T", [props("U4", "c")], 503, 9, log_id=3, below=14)
        await index.close()  # the flush drains first: entries and mark persist
        await store.close()
        store, index = await open_index(io)
        assert index.lookup("T#c", 0, 100, 10) == [503] and index.lookup("T#a", 0, 100, 10) == [502, 500]
        assert index._watermarks[3] == 14
        await index.close()
        await store.close()

    asyncio.run(body())
