"""Allocation strategies: every queue to exactly one consumer, deterministic, balanced."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.rocket.client import (
    AllocateMessageQueueAveragely,
    AllocateMessageQueueAveragelyByCircle,
    AllocateMessageQueueByConfig,
    AllocateMessageQueueConsistentHash,
    AllocateMessageQueueStrategy,
    MessageQueue,
)

STRATEGIES: list[AllocateMessageQueueStrategy] = [
    AllocateMessageQueueAveragely(),
    AllocateMessageQueueAveragelyByCircle(),
    AllocateMessageQueueConsistentHash(),
    AllocateMessageQueueConsistentHash(virtual_node_cnt=1),
]

queues_st = st.builds(
    lambda brokers, n: sorted(MessageQueue("T", f"broker-{b}", q) for b in brokers for q in range(n)),
    st.sets(st.integers(0, 4), min_size=1, max_size=3),
    st.integers(1, 16),
)
cids_st = st.lists(
    st.from_regex(r"10\.0\.0\.[0-9]{1,3}@[0-9]{1,5}", fullmatch=True), min_size=1, max_size=12,
    unique=True,
).map(sorted)


def _all(strategy: AllocateMessageQueueStrategy, mqs: list[MessageQueue], cids: list[str]
         ) -> dict[str, list[MessageQueue]]:
    return {cid: strategy.allocate("G", cid, mqs, cids) for cid in cids}


@settings(max_examples=150, deadline=None)
@given(mqs=queues_st, cids=cids_st)
def test_every_queue_goes_to_exactly_one_consumer(mqs: list[MessageQueue], cids: list[str]) -> None:
    for strategy in STRATEGIES:
        shares = _all(strategy, mqs, cids)
        taken = [mq for share in shares.values() for mq in share]
        assert sorted(taken) == mqs, strategy.get_name()


@settings(max_examples=100, deadline=None)
@given(mqs=queues_st, cids=cids_st)
def test_allocation_is_deterministic(mqs: list[MessageQueue], cids: list[str]) -> None:
    for strategy in STRATEGIES:
        assert _all(strategy, mqs, cids) == _all(strategy, list(mqs), list(cids))


@settings(max_examples=150, deadline=None)
@given(mqs=queues_st, cids=cids_st)
def test_averaging_strategies_are_balanced(mqs: list[MessageQueue], cids: list[str]) -> None:
    for strategy in (AllocateMessageQueueAveragely(), AllocateMessageQueueAveragelyByCircle()):
        sizes = [len(s) for s in _all(strategy, mqs, cids).values()]
        assert max(sizes) - min(sizes) <= 1
        assert max(sizes) == -(-len(mqs) // len(cids))


def test_averagely_gives_contiguous_pages_like_rocketmq() -> None:
    mqs = [MessageQueue("T", "b", i) for i in range(5)]
    shares = _all(AllocateMessageQueueAveragely(), mqs, ["a", "b"])
    assert [mq.queue_id for mq in shares["a"]] == [0, 1, 2]
    assert [mq.queue_id for mq in shares["b"]] == [3, 4]


def test_by_circle_deals_like_cards() -> None:
    mqs = [MessageQueue("T", "b", i) for i in range(5)]
    shares = _all(AllocateMessageQueueAveragelyByCircle(), mqs, ["a", "b"])
    assert [mq.queue_id for mq in shares["a"]] == [0, 2, 4]
    assert [mq.queue_id for mq in shares["b"]] == [1, 3]


def test_consistent_hash_moves_few_queues_when_a_consumer_joins() -> None:
    mqs = [MessageQueue("T", f"b{b}", i) for b in range(2) for i in range(16)]
    before = _all(AllocateMessageQueueConsistentHash(), mqs, ["c1", "c2", "c3"])
    after = _all(AllocateMessageQueueConsistentHash(), mqs, ["c1", "c2", "c3", "c4"])
    moved = [mq for cid in ("c1", "c2", "c3") for mq in before[cid] if mq not in after[cid]]
    assert set(moved) == set(after["c4"])  # only what the newcomer takes changes hands


def test_unknown_consumer_gets_nothing() -> None:
    mqs = [MessageQueue("T", "b", i) for i in range(4)]
    for strategy in STRATEGIES:
        assert strategy.allocate("G", "stranger", mqs, ["a", "b"]) == []


def test_by_config_returns_the_configured_queues() -> None:
    chosen = [MessageQueue("T", "b", 3)]
    strategy = AllocateMessageQueueByConfig(chosen)
    assert strategy.allocate("G", "a", [MessageQueue("T", "b", i) for i in range(4)], ["a"]) == chosen
    assert strategy.get_name() == "CONFIG"
