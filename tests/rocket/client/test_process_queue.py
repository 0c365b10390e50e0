"""ProcessQueue against a model (a plain set of offsets in flight): whatever the order in which
listeners finish, the commit offset is the lowest offset in flight, or one past the highest
pulled; orderly takes hand out the lowest waiting messages."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from adapters.rocket.client import new_message
from adapters.rocket.client.process_queue import ProcessQueue
from adapters.rocket.message import Message

ops_st = st.lists(st.one_of(
    st.tuples(st.just("put"), st.integers(0, 3), st.integers(1, 40)),  # gap before, how many
    st.tuples(st.just("remove"), st.integers(0, 2**32), st.integers(1, 40)),  # which, how many
    st.tuples(st.just("take"), st.integers(1, 8), st.integers(0, 1)),  # how many, consume again?
), max_size=60)


@given(ops=ops_st)
def test_commit_offset_is_the_lowest_in_flight(ops: list[tuple[str, int, int]]) -> None:
    pq = ProcessQueue()
    waiting: dict[int, Message] = {}  # the model
    top = -1
    for op, a, b in ops:
        if op == "put":
            start = top + 1 + a
            msgs = [Message("T", queue_offset=o) for o in range(start, start + b)]
            pq.put_messages(msgs)
            waiting.update((m.queue_offset, m) for m in msgs)
            top = start + b - 1
        elif op == "remove":
            live = sorted(waiting)
            if not live:
                assert pq.remove_messages([]) == -1  # nothing in flight: nothing to say
                assert pq.remove_one(top + 1) == -1
                continue
            done = [waiting.pop(live[(a + i * 7) % len(live)]) for i in range(min(b, len(live)))
                    if live[(a + i * 7) % len(live)] in waiting]
            expected = min(waiting) if waiting else top + 1
            if len(done) == 1 and a % 2:
                assert pq.remove_one(done[0].queue_offset) == expected
            else:
                assert pq.remove_messages(done) == expected
        else:
            taken = pq.take_messages(a)
            assert [m.queue_offset for m in taken] == sorted(waiting)[:a]
            if b:
                pq.consume_again(taken)
            else:
                for m in taken:
                    del waiting[m.queue_offset]
                pq.commit()
        assert pq.msg_count == len(waiting)
        assert pq.commit_offset() == (min(waiting) if waiting else top + 1 if top >= 0 else -1)


def test_expired_is_the_lowest_message_held_too_long() -> None:
    pq = ProcessQueue()
    msgs = []
    for i in range(3):
        m = new_message("T", b"m%d" % i)
        m.queue_offset = i
        msgs.append(m)
    pq.put_messages(msgs)
    assert pq.expired(1000.0, 10.0) is None  # nothing handed to a listener yet
    pq.mark_consuming(msgs[:2], 100.0)
    assert pq.expired(105.0, 10.0) is None
    assert pq.expired(111.0, 10.0) is msgs[0]
    assert pq.remove_one(0) == 1
    assert pq.expired(111.0, 10.0) is msgs[1]
    pq.remove_messages([msgs[1]])
    assert pq.expired(10_000.0, 10.0) is None  # msgs[2] was never handed out
