"""The pull read cache (read_cache.py) and the reader over it: the LRU stays within its byte
bound, a log made again is a miss, and a run of pulls answers exactly as pulls that each read
afresh, whatever the batch shapes, sizes, tags and pull sizes (hypothesis)."""

from __future__ import annotations

import asyncio
import gc
import itertools

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from adapters.rocket.broker.read_cache import Chunk, ReadCache
from adapters.rocket.broker.reader import TagFilter, read_messages
from adapters.rocket.message import decode_stored, encode_stored_raw
from logstore import Log, LogConfig, SimClock, SimIO, Store
from logstore.batch import build_opaque_batch
from logstore.log import ReadResult

HOST = b"\x7f\x00\x00\x01\x00\x00\x27\x10"  # 127.0.0.1:10000


class FakeLog:
    """What the cache looks at: a name (and an identity)."""

    def __init__(self, name: str) -> None:
        self.name = name


def chunk(nbytes: int, next_offset: int = 0, *, exhausted: bool = False) -> Chunk:
    return Chunk(memoryview(bytes(nbytes)), next_offset, nbytes if exhausted else 0, 0)


def test_lru_stays_within_its_byte_bound() -> None:
    cache = ReadCache(bytes_max=1000)
    logs = [FakeLog(f"q{i}") for i in range(5)]
    for i, log in enumerate(logs):
        cache.put(log, chunk(300, i))  # type: ignore[arg-type]
        assert cache.nbytes <= 1000
    assert len(cache) == 3 and cache.nbytes == 900
    assert cache.take(logs[0], 0) is None and cache.take(logs[1], 1) is None  # type: ignore[arg-type]
    got = cache.take(logs[4], 4)  # type: ignore[arg-type]
    assert got is not None and cache.nbytes == 600 and len(cache) == 2
    assert cache.take(logs[4], 4) is None  # type: ignore[arg-type]  # taken: gone until put back


def test_lru_evicts_the_least_recently_used() -> None:
    cache = ReadCache(bytes_max=1000)
    a, b, c = FakeLog("a"), FakeLog("b"), FakeLog("c")
    cache.put(a, chunk(400, 0))  # type: ignore[arg-type]
    cache.put(b, chunk(400, 0))  # type: ignore[arg-type]
    got = cache.take(a, 0)  # type: ignore[arg-type]
    assert got is not None
    cache.put(a, got)  # a is now the most recent
    cache.put(c, chunk(400, 0))  # type: ignore[arg-type]
    assert cache.take(b, 0) is None  # type: ignore[arg-type]
    assert cache.take(a, 0) is not None and cache.take(c, 0) is not None  # type: ignore[arg-type]


def test_too_big_or_exhausted_chunks_are_not_kept() -> None:
    cache = ReadCache(bytes_max=1000)
    log = FakeLog("q")
    cache.put(log, chunk(1001))  # type: ignore[arg-type]
    cache.put(log, chunk(10, 5, exhausted=True))  # type: ignore[arg-type]
    assert len(cache) == 0 and cache.nbytes == 0


def test_a_log_made_again_is_a_miss() -> None:
    cache = ReadCache()
    old = FakeLog("q")
    cache.put(old, chunk(10, 3))  # type: ignore[arg-type]
    del old
    gc.collect()
    assert cache.take(FakeLog("q"), 3) is None  # type: ignore[arg-type]
    assert cache.nbytes == 0


# -- the reader over the cache ---------------------------------------------------------------------

messages_st = st.lists(st.tuples(st.integers(0, 300), st.sampled_from(["", "a", "b"])), min_size=1, max_size=60)


def stored(offset: int, body_bytes: int, tag: str) -> bytes:
    props = f"TAGS\x01{tag}\x02".encode() if tag else b""
    return encode_stored_raw(b"T", bytes([offset % 251]) * body_bytes, props, queue_id=0, flag=0,
                             queue_offset=offset, commitlog_offset=offset, sys_flag=0, born_timestamp=1,
                             born_host=HOST, store_timestamp=2, store_host=HOST)


async def filled_log(messages: list[tuple[int, str]], cuts: list[int]) -> tuple[Store, Log]:
    store = await Store.open("/store", io=SimIO(seed=1), clock=SimClock())
    log = await store.create_log("T-0", LogConfig(segment_bytes=4096, index_interval_bytes=256))
    records = [stored(i, size, tag) for i, (size, tag) in enumerate(messages)]
    bounds = sorted({0, len(records), *(c % len(records) for c in cuts)})
    for lo, hi in itertools.pairwise(bounds):
        await log.append(build_opaque_batch(b"".join(records[lo:hi]), hi - lo, 2, 2))
    return store, log


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages=messages_st, cuts=st.lists(st.integers(0, 1000), max_size=12),
       pulls=st.lists(st.tuples(st.integers(1, 40), st.integers(1, 3000)), min_size=1, max_size=30),
       expression=st.sampled_from(["*", "a", "a || b"]), cache_bytes=st.sampled_from([0, 2000, 1 << 20]))
# Found by this test: a filtered pull checked its byte budget only between chunks, so a cached
# cursor's shorter chunk and a fresh read's longer one looked at different numbers of messages.
@example(messages=[(0, ""), (0, ""), (0, ""), (0, "a")] + [(0, "")] * 10, cuts=[1, 6, 7, 13],
         pulls=[(1, 1), (1, 1), (1, 766)], expression="a", cache_bytes=2000)
def test_cached_pulls_answer_as_fresh_reads(messages: list[tuple[int, str]], cuts: list[int],
                                            pulls: list[tuple[int, int]], expression: str,
                                            cache_bytes: int) -> None:
    async def run() -> None:
        store, log = await filled_log(messages, cuts)
        tag_filter = TagFilter.parse(expression)
        cache = ReadCache(cache_bytes)
        offset = 0
        seen: list[int] = []
        for max_count, max_bytes in pulls:
            if offset >= log.committed_offset:
                break
            fresh = read_messages(log, offset, max_count, max_bytes, tag_filter)
            got = read_messages(log, offset, max_count, max_bytes, tag_filter, cache)
            assert (got.body, got.count, got.next_offset, got.examined) == \
                (fresh.body, fresh.count, fresh.next_offset, fresh.examined)
            assert cache.nbytes <= cache_bytes
            assert 1 <= got.count <= max_count or got.examined > 0
            assert got.count <= 1 or got.nbytes <= max_bytes
            decoded = decode_stored(got.body)
            assert [m.queue_offset for m in decoded] == sorted(m.queue_offset for m in decoded)
            assert all(o >= offset for o in (m.queue_offset for m in decoded))
            seen += [m.queue_offset for m in decoded]
            assert got.next_offset > offset
            offset = got.next_offset
        wanted = [i for i, (_size, tag) in enumerate(messages) if tag_filter.match_tags(tag or None)]
        assert seen == [i for i in wanted if i < offset]
        await store.close()

    asyncio.run(run())


def test_consecutive_pulls_read_the_log_once_per_chunk() -> None:
    async def run() -> None:
        store, log = await filled_log([(1000, "")] * 256, [])  # one batch of 256 messages
        reads = 0
        real_read = log.read

        def counting_read(offset: int, max_bytes: int = 1 << 20) -> ReadResult:
            nonlocal reads
            reads += 1
            return real_read(offset, max_bytes)

        log.read = counting_read  # type: ignore[method-assign]
        cache = ReadCache()
        offset = 0
        while offset < log.committed_offset:
            got = read_messages(log, offset, 32, 1 << 20, TagFilter(), cache)
            assert got.count == 32
            offset = got.next_offset
        assert reads == 1 and cache.hits == 7 and len(cache) == 0  # read to its end: not kept
        await store.close()

    asyncio.run(run())
