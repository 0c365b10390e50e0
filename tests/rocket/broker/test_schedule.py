"""Scheduled messages against a real broker: delay levels and TIMER_* times are never early and
at most 1 s late, survive SIGTERM and SIGKILL restarts (also when they fall due during the
outage), and bad scheduling properties are refused with nothing stored."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import pytest

from adapters.rocket.message import Message
from adapters.rocket.remoting import RequestCode, ResponseCode

from .conftest import Driver, ServeProcess

pytestmark = pytest.mark.anyio

LATE_MS_MAX = 1000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def send_scheduled(d: Driver, topic: str, body: bytes, props: dict[str, str]) -> int:
    """Send; returns the client's wall clock (ms, rounded down) just before the send."""
    sent = now_ms()
    resp = await d.send(Message(topic, body, properties={"UNIQ_KEY": body.decode(), **props}))
    assert resp.code == ResponseCode.SUCCESS, resp.remark
    assert resp.ext_fields["queueId"] == "0"  # the queue asked for, not the system queue
    return sent


async def collect(d: Driver, topic: str, want: set[bytes], timeout_s: float,
                  arrivals: dict[bytes, int] | None = None) -> list[Message]:
    """Long-poll queue 0 of ``topic`` from offset 0 until every body in ``want`` arrived;
    ``arrivals`` gets each body's first arrival time (client wall clock, ms)."""
    got: list[Message] = []
    offset = 0
    deadline = time.monotonic() + timeout_s
    while not want <= {m.body for m in got} and time.monotonic() < deadline:
        resp, msgs = await d.pull(topic, 0, offset, suspend_ms=500, timeout_s=5.0)
        t = now_ms()
        if resp.code == ResponseCode.SUCCESS:
            for m in msgs:
                if arrivals is not None:
                    arrivals.setdefault(m.body, t)
            got += msgs
            offset = int(resp.ext_fields["nextBeginOffset"])
    return got


async def max_offset(d: Driver, topic: str, qid: int) -> int:
    resp = await d.call(RequestCode.GET_MAX_OFFSET, {"topic": topic, "queueId": qid})
    assert resp.code == 0, resp.remark
    return int(resp.ext_fields["offset"])


async def test_levels_and_timer_times_are_never_early_nor_late(sd: Driver) -> None:
    await sd.create_topic("TDelay", 1)
    base = now_ms()
    cases: dict[bytes, tuple[dict[str, str], int | None]] = {  # props, delay ms (None: absolute)
        b"level1": ({"DELAY": "1"}, 1000),
        b"level2": ({"DELAY": "2"}, 2000),
        b"level3": ({"DELAY": "3"}, 1000),
        b"level99": ({"DELAY": "99"}, 1000),  # past the last level: the last level (3)
        b"levelWins": ({"DELAY": "1", "TIMER_DELAY_SEC": "60"}, 1000),
        b"delaySec": ({"TIMER_DELAY_SEC": "2"}, 2000),
        b"delayMs": ({"TIMER_DELAY_MS": "1500"}, 1500),
        b"deliverMs": ({"TIMER_DELIVER_MS": str(base + 2500)}, None),
        b"pastMs": ({"TIMER_DELIVER_MS": str(base - 5000)}, 0),  # already due: an ordinary message
        b"level0": ({"DELAY": "0"}, 0),
    }
    due: dict[bytes, int] = {}
    for body, (props, delay) in cases.items():
        sent = await send_scheduled(sd, "TDelay", body, props)
        due[body] = int(props["TIMER_DELIVER_MS"]) if delay is None else sent + delay
    arrivals: dict[bytes, int] = {}
    got = await collect(sd, "TDelay", set(cases), 8.0, arrivals)
    assert {m.body for m in got} == set(cases)
    assert len(got) == len(cases)  # once each
    lateness = {b: arrivals[b] - due[b] for b in cases}
    assert all(0 <= late <= LATE_MS_MAX for late in lateness.values()), lateness
    for m in got:
        assert m.topic == "TDelay" and m.queue_id == 0
        assert m.properties["UNIQ_KEY"] == m.body.decode()
        if m.body != b"level0":  # an ordinary message keeps what it was sent with
            assert not {"DELAY", "REAL_TOPIC", "REAL_QID", "TIMER_OUT_MS", "TIMER_DELAY_SEC"} & set(m.properties), m


async def test_bad_schedules_are_refused_and_nothing_is_stored(sd: Driver) -> None:
    await sd.create_topic("TBad", 1)
    bad = [
        ({"TIMER_DELIVER_MS": "tomorrow"}, "TIMER_DELIVER_MS"),
        ({"TIMER_DELAY_SEC": "1.5"}, "TIMER_DELAY_SEC"),
        ({"DELAY": "three"}, "DELAY"),
        ({"TIMER_DELAY_SEC": str(3 * 86400 + 60)}, "max delay"),  # timerMaxDelaySec: 3 days
        ({"TIMER_DELIVER_MS": str(now_ms() + 4 * 86400 * 1000)}, "max delay"),
    ]
    for props, why in bad:
        resp = await sd.send(Message("TBad", b"x", properties=props))
        assert resp.code == ResponseCode.MESSAGE_ILLEGAL and why in (resp.remark or ""), (props, resp.remark)
    resp = await sd.send_batch("TBad", [Message("TBad", b"a"), Message("TBad", b"b")])
    assert resp.code == 0  # a batch without scheduling properties is fine
    batch = await sd.call(RequestCode.SEND_BATCH_MESSAGE, {
        "a": "PG", "b": "TBad", "c": "TBW102", "d": 4, "e": 0, "f": 0, "g": now_ms(), "h": 0,
        "i": "DELAY\x012\x02", "j": 0, "k": False, "m": True}, b"")
    assert batch.code == ResponseCode.MESSAGE_ILLEGAL
    assert await max_offset(sd, "TBad", 0) == 2  # only the good batch
    for qid in range(3):
        assert await max_offset(sd, "SCHEDULE_TOPIC_XXXX", qid) == 0
    assert await max_offset(sd, "rmq_sys_wheel_timer", 0) == 0
    direct = await sd.send(Message("SCHEDULE_TOPIC_XXXX", b"x"))
    assert direct.code == ResponseCode.MESSAGE_ILLEGAL


async def test_due_during_a_sigkill_outage_delivered_after_restart(sd: Driver, sched_serve: ServeProcess) -> None:
    await sd.create_topic("TKill", 1)
    due: dict[bytes, int] = {}
    for i in range(30):
        kind = i % 3
        props = [{"DELAY": "1"}, {"DELAY": "2"}, {"TIMER_DELAY_MS": str(800 + 50 * i)}][kind]
        delay = [1000, 2000, 800 + 50 * i][kind]
        body = f"k{i}".encode()
        due[body] = await send_scheduled(sd, "TKill", body, props) + delay
    for i in range(4):  # due after the restart
        body = f"late{i}".encode()
        delay = 6000 + 300 * i
        due[body] = await send_scheduled(sd, "TKill", body, {"TIMER_DELAY_MS": str(delay)}) + delay
    sched_serve.stop(signal.SIGKILL)
    await asyncio.sleep(3.0)  # everything but late* falls due while the broker is down
    sched_serve.start()
    restarted = now_ms()
    await sd.reconnect()
    arrivals: dict[bytes, int] = {}
    got = await collect(sd, "TKill", set(due), 10.0, arrivals)
    assert {m.body for m in got} == set(due)  # none lost (a duplicate would be allowed)
    for body, t in arrivals.items():
        assert t >= due[body], (body, t - due[body])  # never early
        if body.startswith(b"k"):
            assert t - restarted <= LATE_MS_MAX + 500, (body, t - restarted)
        else:
            assert t - due[body] <= LATE_MS_MAX, (body, t - due[body])


async def test_sigterm_restart_keeps_pending_and_does_not_redeliver(sd: Driver, sched_serve: ServeProcess,
                                                                   tmp_path: Path) -> None:
    await sd.create_topic("TTerm", 1)
    await send_scheduled(sd, "TTerm", b"early", {"DELAY": "1"})
    assert {m.body for m in await collect(sd, "TTerm", {b"early"}, 5.0)} == {b"early"}
    due: dict[bytes, int] = {}
    for i in range(10):
        body = f"p{i}".encode()
        props = {"DELAY": "2"} if i % 2 else {"TIMER_DELAY_MS": "2500"}
        due[body] = await send_scheduled(sd, "TTerm", body, props) + (2000 if i % 2 else 2500)
    sched_serve.restart(signal.SIGTERM)
    assert not sched_serve.killed
    progress = json.loads((tmp_path / "data" / "config" / "delayOffset.json").read_text())
    assert progress["offsetTable"]["1"] == 1 and set(progress["timer"]) == {"low", "done"}
    await sd.reconnect()
    arrivals: dict[bytes, int] = {}
    got = await collect(sd, "TTerm", set(due), 8.0, arrivals)
    assert sorted(m.body for m in got) == sorted([b"early", *due])  # exactly once each
    assert all(arrivals[b] >= due[b] for b in due)
    await asyncio.sleep(0.5)
    assert await max_offset(sd, "TTerm", 0) == 11
