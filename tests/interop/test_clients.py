"""Third-party RocketMQ clients against our broker, unchanged: the C++-core Python client
``rocketmq==0.4.4`` and the JavaScript client ``ali-ons@3.12.0`` (``client`` is parametrized
over both). Every assertion is on what the application's listener saw.

Both clients start a new group at the consumer offset the broker answers for it; our broker,
like RocketMQ's, answers 0 for a queue whose first message is still stored, so messages sent
before a group's first consumer started are delivered too.
"""

from __future__ import annotations

import base64
import time
from collections import Counter

import pytest

from ._harness import BrokerProcess, ClientDriver, DriverProcess, Event, Msg, wait_until

pytestmark = [pytest.mark.interop, pytest.mark.slow]

PROPS = ["color", "seq", "note"]
FILTER = "TagA || TagB"
DELIVERY_TIMEOUT_S = 30.0
QUIET_S = 1.0  # after the last expected delivery: time for a stray or duplicate one to show up
SETTLE_TIMEOUT_S = 30.0  # ali-ons rebalances on a 10 s timer only
NOTIFY_SETTLE_S = 3.0  # the C++ core rebalances as soon as NOTIFY_CONSUMER_IDS_CHANGED arrives


def make_msgs(topic: str, prefix: str, n: int, tags: tuple[str, ...] = ("TagA", "TagB", "TagC")) -> list[Msg]:
    msgs = []
    for i in range(n):
        tag = tags[i % len(tags)]
        body = f"{prefix} #{i} {tag}: grüße ✓ ".encode()
        if i == 1:
            body = body * 300  # > 4 KiB: both clients compress it (sysFlag bit 0) before sending
        msgs.append(Msg(topic, tag, (f"{prefix}-{i:03d}", f"order-{i % 4}"), body,
                        {"color": ("red", "grün", "blue")[i % 3], "seq": str(i), "note": f"a=b c:{i} ✓ spaced out"}))
    return msgs


def matching(msgs: list[Msg]) -> dict[str, Msg]:
    wanted = {t.strip() for t in FILTER.split("||")}
    return {m.id: m for m in msgs if m.tags in wanted}


def msg_id(event: Event) -> str:
    return str(event["keys"]).split(" ")[0]


def ids_seen(events: list[Event]) -> set[str]:
    return {msg_id(e) for e in events if e.get("event") == "msg"}


def wait_delivered(consumers: list[DriverProcess], ids: set[str]) -> None:
    """Until the consumers together have seen every id (a consumer that exits fails it)."""

    def done() -> bool:
        for c in consumers:
            assert c.popen.poll() is None, f"{c.name} exited {c.popen.returncode}\n{c.stderr_tail()}"
        return ids <= set().union(*(ids_seen(c.received()) for c in consumers))

    wait_until(done, DELIVERY_TIMEOUT_S, f"{len(ids)} messages at {[c.name for c in consumers]}")


def assert_intact(got: list[Event], sent: dict[str, Msg]) -> None:
    """Each delivery is a message we sent, with body, tags, keys and properties unchanged."""
    for e in got:
        m = sent.get(msg_id(e))
        assert m is not None, f"delivered a message that was not expected here: {e}"
        assert e["topic"] == m.topic
        assert e["tags"] == m.tags, (e["tags"], m.tags)
        assert e["keys"] == " ".join(m.keys), (e["keys"], m.keys)
        assert base64.b64decode(e["body_b64"]) == m.body, f"body of {m.id} changed"
        assert e["props"] == m.props, (e["props"], m.props)
        assert e["reconsume_times"] == 0


def assert_exactly_once(got: list[Event], expected: dict[str, Msg], who: str) -> None:
    counts = Counter(msg_id(e) for e in got)
    dupes = {k: n for k, n in counts.items() if n > 1}
    assert not dupes, f"{who}: delivered more than once: {dupes}"
    assert set(counts) == set(expected), (f"{who}: missing {sorted(set(expected) - set(counts))}, "
                                          f"unexpected {sorted(set(counts) - set(expected))}")


def test_tags_keys_properties_and_tag_filter(broker: BrokerProcess, client: ClientDriver) -> None:
    """Messages with tags, two keys and user properties; a push consumer subscribed to
    ``TagA || TagB`` gets every matching one exactly once, intact, and never a TagC one. Half
    are sent before the consumer starts, half while it runs (its pulls held by the broker)."""
    topic, group = "InteropTags", "CG_interop_tags"
    broker.create_topic(topic, queues=4)
    early = make_msgs(topic, "early", 9)
    client.produce(broker.namesrv, "PG_interop", early)
    consumer = client.consumer(broker.namesrv, group, topic, FILTER, PROPS)
    late = make_msgs(topic, "late", 9)
    client.produce(broker.namesrv, "PG_interop", late)

    expected = matching(early + late)
    wait_delivered([consumer], set(expected))
    time.sleep(QUIET_S)
    consumer.stop()

    got = consumer.received()
    assert not [e for e in got if e["tags"] not in ("TagA", "TagB")], "a TagC message reached the listener"
    assert_intact(got, expected)
    assert_exactly_once(got, expected, consumer.name)


def test_restarted_consumer_resumes_from_committed_offset(broker: BrokerProcess, client: ClientDriver) -> None:
    """Consume N, shut down (the client commits its offsets), send M more, start again in the
    same group: exactly the M new ones arrive, none of the N old ones."""
    topic, group = "InteropResume", "CG_interop_resume"
    broker.create_topic(topic, queues=4)
    first = make_msgs(topic, "first", 10)
    client.produce(broker.namesrv, "PG_interop", first)
    c1 = client.consumer(broker.namesrv, group, topic, FILTER, PROPS)
    wait_delivered([c1], set(matching(first)))
    time.sleep(QUIET_S)
    c1.stop()
    assert_exactly_once(c1.received(), matching(first), c1.name)

    second = make_msgs(topic, "second", 10)
    client.produce(broker.namesrv, "PG_interop", second)
    c2 = client.consumer(broker.namesrv, group, topic, FILTER, PROPS)
    wait_delivered([c2], set(matching(second)))
    time.sleep(QUIET_S)
    c2.stop()

    got = c2.received()
    old = sorted(msg_id(e) for e in got if msg_id(e) in matching(first))
    assert not old, f"the restarted consumer got already-consumed messages again: {old}"
    assert_intact(got, matching(second))
    assert_exactly_once(got, matching(second), c2.name)


def _assignment(proc: DriverProcess) -> set[int] | None:
    """The queue ids the consumer last said it holds (ali-ons only)."""
    event = proc.last("queues")
    return None if event is None else set(event["queues"])


def test_two_consumers_in_one_group_split_the_queues(broker: BrokerProcess, client: ClientDriver) -> None:
    """Two consumers in one group each take a share of the queues: both get messages, no
    queue is consumed by both, and together they get everything."""
    topic, group, queues = "InteropSplit", "CG_interop_split", 4
    broker.create_topic(topic, queues=queues)
    a = client.consumer(broker.namesrv, group, topic, "*", PROPS)
    b = client.consumer(broker.namesrv, group, topic, "*", PROPS)
    wait_until(lambda: len(broker.consumer_ids(group)) == 2, 15.0, "both consumers in the group")
    if client.reports_queues:
        def settled() -> bool:
            qa, qb = _assignment(a), _assignment(b)
            return bool(qa and qb and not qa & qb and qa | qb == set(range(queues)))

        wait_until(settled, SETTLE_TIMEOUT_S, "a disjoint queue assignment covering every queue")
    else:
        time.sleep(NOTIFY_SETTLE_S)

    msgs = make_msgs(topic, "split", 24, tags=("TagA",))
    client.produce(broker.namesrv, "PG_interop", msgs)
    expected = {m.id: m for m in msgs}
    wait_delivered([a, b], set(expected))
    time.sleep(QUIET_S)
    a.stop()
    b.stop()

    got_a, got_b = a.received(), b.received()
    ids_a, ids_b = {msg_id(e) for e in got_a}, {msg_id(e) for e in got_b}
    queues_a, queues_b = {e["queue_id"] for e in got_a}, {e["queue_id"] for e in got_b}
    assert ids_a and ids_b, f"one consumer got nothing: {len(ids_a)} / {len(ids_b)}"
    assert not queues_a & queues_b, f"queues consumed by both: {sorted(queues_a & queues_b)}"
    assert queues_a | queues_b == set(range(queues))
    assert not ids_a & ids_b, f"delivered to both: {sorted(ids_a & ids_b)}"
    assert ids_a | ids_b == set(expected)
    assert_intact(got_a + got_b, expected)
    assert_exactly_once(got_a + got_b, expected, "the group")
