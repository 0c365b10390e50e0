"""Transactional messages against a real broker, driven with raw remoting requests: half
messages, END_TRANSACTION (commit once, rollback never, duplicates and late ones ignored, bad
input refused with nothing stored), the check-back (with a raw producer connection), check max,
and op state across SIGTERM and SIGKILL restarts."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import orjson
import pytest

from adapters.rocket.message import Message, decode_offset_msg_id, decode_one_stored
from adapters.rocket.remoting import (
    Connection,
    RemotingClient,
    RemotingCommand,
    RequestCode,
    ResponseCode,
)

from .conftest import Driver, ServeProcess, write_conf

pytestmark = pytest.mark.anyio

HALF = "RMQ_SYS_TRANS_HALF_TOPIC"
OP = "RMQ_SYS_TRANS_OP_HALF_TOPIC"
CHECK_MAX = "TRANS_CHECK_MAX_TIME_TOPIC"
COMMIT, ROLLBACK, UNKNOWN = 8, 12, 0
SYSFLAG_PREPARED, SYSFLAG_COMMIT = 0x4, 0x8


def tx_conf(tmp_path: Path, **keys: object) -> Path:
    base: dict[str, object] = {"brokerName": "broker-a", "transactionCheckInterval": 200,
                               "transactionTimeOut": 400, "transactionCheckMax": 15}
    return write_conf(tmp_path / "broker.conf", **{**base, **keys})


@pytest.fixture
def tx_serve(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ServeProcess]:
    keys = getattr(request, "param", {})
    proc = ServeProcess(tmp_path / "data", tx_conf(tmp_path, **keys))
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
async def d(tx_serve: ServeProcess) -> AsyncIterator[Driver]:
    drv = Driver(tx_serve)
    try:
        yield drv
    finally:
        await drv.close()


def tx_message(topic: str, body: bytes, group: str = "PG", **props: str) -> Message:
    return Message(topic, body, properties={"TRAN_MSG": "true", "PGROUP": group, "UNIQ_KEY": f"U-{body.decode()}",
                                            **props})


async def send_half(d: Driver, topic: str, body: bytes, queue_id: int = 1, **props: str) -> tuple[int, int]:
    """-> (tranStateTableOffset, commitLogOffset) of the stored half message."""
    resp = await d.send(tx_message(topic, body, **props), queue_id)
    assert resp.code == 0, resp.remark
    assert resp.ext_fields["queueId"] == str(queue_id)
    _host, phys = decode_offset_msg_id(resp.ext_fields["msgId"])
    return int(resp.ext_fields["queueOffset"]), phys


async def end(d: Driver, table_offset: int, phys: int, kind: int, group: str = "PG",
              from_check: bool = False) -> RemotingCommand:
    return await d.call(RequestCode.END_TRANSACTION, {
        "producerGroup": group, "tranStateTableOffset": table_offset, "commitLogOffset": phys,
        "commitOrRollback": kind, "fromTransactionCheck": from_check, "msgId": "m", "transactionId": "t"})


async def bodies(d: Driver, topic: str, queue_id: int = 1) -> list[bytes]:
    _resp, msgs = await d.pull(topic, queue_id, 0)
    return [m.body for m in msgs]


async def max_offset(d: Driver, topic: str, queue_id: int = 0) -> int:
    resp = await d.call(RequestCode.GET_MAX_OFFSET, {"topic": topic, "queueId": queue_id})
    return int(resp.ext_fields.get("offset", "0")) if resp.code == 0 else 0


async def test_commit_is_visible_once_and_rollback_never(d: Driver) -> None:
    await d.create_topic("TX", 2)
    committed = await send_half(d, "TX", b"bob-100")
    rolled = await send_half(d, "TX", b"smith-100")
    assert await bodies(d, "TX") == []  # half messages are invisible
    assert (await end(d, *committed, COMMIT)).code == 0
    assert (await end(d, *rolled, ROLLBACK)).code == 0
    resp, msgs = await d.pull("TX", 1, 0)
    assert [m.body for m in msgs] == [b"bob-100"]
    m = msgs[0]
    assert m.topic == "TX" and m.queue_id == 1 and m.sys_flag & 0xC == SYSFLAG_COMMIT
    assert "TRAN_MSG" not in m.properties and "REAL_TOPIC" not in m.properties and "REAL_QID" not in m.properties
    assert m.properties["PGROUP"] == "PG" and m.properties["UNIQ_KEY"] == "U-bob-100"
    assert m.prepared_transaction_offset == committed[1]
    # Duplicates and late answers, either way round, change nothing.
    for args in (committed, rolled):
        for kind in (COMMIT, ROLLBACK):
            resp = await end(d, *args, kind, from_check=True)
            assert resp.code == 0 and "already settled" in (resp.remark or "")
    assert await bodies(d, "TX") == [b"bob-100"]
    assert await max_offset(d, OP) == 2


async def test_unknown_does_nothing_and_a_later_commit_applies(d: Driver) -> None:
    await d.create_topic("TU", 2)
    half = await send_half(d, "TU", b"later")
    assert (await end(d, *half, UNKNOWN)).code == 0
    assert await bodies(d, "TU") == [] and await max_offset(d, OP) == 0
    assert (await end(d, *half, COMMIT)).code == 0
    assert await bodies(d, "TU") == [b"later"]


async def test_concurrent_duplicate_commits_store_once(d: Driver) -> None:
    await d.create_topic("TC", 2)
    half = await send_half(d, "TC", b"once")
    answers = await asyncio.gather(*(end(d, *half, COMMIT) for _ in range(8)))
    assert all(a.code == 0 for a in answers)
    assert sum("already settled" in (a.remark or "") for a in answers) == 7
    assert await bodies(d, "TC") == [b"once"]


async def test_bad_end_transaction_is_refused_and_stores_nothing(d: Driver) -> None:
    await d.create_topic("TB", 2)
    plain = await d.send(Message("TB", b"plain"), 1)
    _h, plain_phys = decode_offset_msg_id(plain.ext_fields["msgId"])
    half = await send_half(d, "TB", b"half")
    cases = [
        ((0, plain_phys, COMMIT), "not a half message"),
        ((0, 12345 << 40, COMMIT), "not a half message"),
        ((half[0], half[1] + 1, COMMIT), "no half message"),
        ((half[0] + 1, half[1], COMMIT), "state table offset wrong"),
        ((*half, 5), "must be 0, 8 or 12"),
    ]
    for (table, phys, kind), why in cases:
        resp = await end(d, table, phys, kind)
        assert resp.code == ResponseCode.SYSTEM_ERROR and why in (resp.remark or ""), (why, resp.remark)
    resp = await end(d, *half, COMMIT, group="OTHER")
    assert resp.code == ResponseCode.SYSTEM_ERROR and "producer group wrong" in (resp.remark or "")
    resp = await d.call(RequestCode.END_TRANSACTION, {"producerGroup": "PG", "commitOrRollback": 8})
    assert resp.code == ResponseCode.SYSTEM_ERROR and "tranStateTableOffset" in (resp.remark or "")
    resp = await d.call(RequestCode.END_TRANSACTION, {"producerGroup": "PG", "tranStateTableOffset": "x",
                                                      "commitLogOffset": half[1], "commitOrRollback": 8})
    assert resp.code == ResponseCode.SYSTEM_ERROR and "not an integer" in (resp.remark or "")
    assert await bodies(d, "TB") == [b"plain"]
    assert await max_offset(d, OP) == 0 and await max_offset(d, HALF) == 1
    # The half message is untouched: it still commits.
    assert (await end(d, *half, COMMIT)).code == 0
    assert await bodies(d, "TB") == [b"plain", b"half"]


async def test_a_batch_may_not_hold_transactional_messages(d: Driver) -> None:
    await d.create_topic("TBA", 1)
    resp = await d.send_batch("TBA", [Message("TBA", b"a"), tx_message("TBA", b"b")], 0)
    assert resp.code == ResponseCode.MESSAGE_ILLEGAL and "batch" in (resp.remark or "")
    assert await max_offset(d, "TBA") == 0 and await max_offset(d, HALF) == 0


class RawProducer:
    """A producer connection that heartbeats its group and records CHECK_TRANSACTION_STATE."""

    def __init__(self, addr: str, group: str = "PG") -> None:
        self.addr = addr
        self.group = group
        self.client = RemotingClient()
        self.checks: list[tuple[dict[str, str], Message]] = []
        self.answer: int | None = None  # commitOrRollback to answer checks with (None: stay silent)
        self.client.register(RequestCode.CHECK_TRANSACTION_STATE, self._on_check)

    async def heartbeat(self) -> None:
        body = orjson.dumps({"clientID": f"raw@{self.group}", "producerDataSet": [{"groupName": self.group}],
                             "consumerDataSet": []})
        resp = await self.client.invoke(self.addr, RemotingCommand.request(RequestCode.HEART_BEAT, body=body))
        assert resp.code == 0

    async def _on_check(self, conn: Connection, cmd: RemotingCommand) -> None:
        self.checks.append((dict(cmd.ext_fields), decode_one_stored(cmd.body)))
        if self.answer is not None:
            ext = cmd.ext_fields
            await conn.invoke_oneway(RemotingCommand.request(RequestCode.END_TRANSACTION, {
                "producerGroup": self.group, "tranStateTableOffset": ext["tranStateTableOffset"],
                "commitLogOffset": ext["commitLogOffset"], "commitOrRollback": self.answer,
                "fromTransactionCheck": True, "msgId": ext["msgId"], "transactionId": ext["transactionId"]}))

    async def close(self) -> None:
        await self.client.close()


async def eventually(predicate_coro: Callable[[], Awaitable[bool]], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if await predicate_coro():
            return
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_check_back_asks_a_live_producer_and_settles(d: Driver) -> None:
    await d.create_topic("TK", 2)
    producer = RawProducer(d.addr)
    try:
        await producer.heartbeat()
        half = await send_half(d, "TK", b"checked", CHECK_IMMUNITY_TIME_IN_SECONDS="1")
        producer.answer = COMMIT

        async def committed() -> bool:
            return await bodies(d, "TK") == [b"checked"]

        t0 = time.monotonic()
        await eventually(committed)
        assert time.monotonic() - t0 >= 0.8  # not before its immunity time
        ext, msg = producer.checks[0]
        assert msg.topic == "TK" and msg.queue_id == 1 and msg.body == b"checked"
        assert msg.properties["TRANSACTION_CHECK_TIMES"] == "1"
        assert ext["msgId"] == "U-checked" and ext["transactionId"] == "U-checked"
        assert int(ext["tranStateTableOffset"]) > half[0]  # the check names the re-appended copy
        assert decode_offset_msg_id(ext["offsetMsgId"])[1] == int(ext["commitLogOffset"])
        await asyncio.sleep(1.0)  # more rounds: settled, so never asked again
        assert len(producer.checks) == 1
        # The original send's END_TRANSACTION arriving late is ignored.
        assert "already settled" in ((await end(d, *half, ROLLBACK)).remark or "")
        assert await bodies(d, "TK") == [b"checked"]
    finally:
        await producer.close()


@pytest.mark.parametrize("tx_serve", [{"transactionCheckMax": 2}], indirect=True)
async def test_check_max_moves_to_check_max_topic(d: Driver, tx_serve: ServeProcess) -> None:
    await d.create_topic("TM", 2)
    producer = RawProducer(d.addr)  # answers nothing
    try:
        await producer.heartbeat()
        half = await send_half(d, "TM", b"orphan")

        async def asked_once() -> bool:
            return len(producer.checks) >= 1

        await eventually(asked_once)
        # The check counter is durable: a SIGKILL restart in the middle does not reset it.
        tx_serve.restart(signal.SIGKILL)
        await d.reconnect()

        async def moved() -> bool:
            return await max_offset(d, CHECK_MAX) == 1

        await eventually(moved)
        _resp, msgs = await d.pull(CHECK_MAX, 0, 0)
        assert [m.body for m in msgs] == [b"orphan"]
        assert msgs[0].properties["REAL_TOPIC"] == "TM" and msgs[0].properties["TRANSACTION_CHECK_TIMES"] == "2"
        assert [c[0]["tranStateTableOffset"] for c in producer.checks] == [str(half[0] + 1)]  # asked once before
        # Discarded is final: a late commit is ignored.
        assert "already settled" in ((await end(d, *half, COMMIT)).remark or "")
        assert await bodies(d, "TM") == []
    finally:
        await producer.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
@pytest.mark.parametrize("tx_serve", [{"transactionTimeOut": 60_000}, {}], indirect=True)
async def test_restart_keeps_op_state(d: Driver, tx_serve: ServeProcess, sig: int) -> None:
    """Settled stays settled across a restart, whether the scan has passed the half message
    (short timeout) or it is still in the unscanned window (long timeout)."""
    await d.create_topic("TR", 2)
    await send_half(d, "TR", b"blocker")  # unsettled: with the long timeout the scan stops here
    committed = await send_half(d, "TR", b"paid")
    rolled = await send_half(d, "TR", b"refused")
    pending = await send_half(d, "TR", b"pending", CHECK_IMMUNITY_TIME_IN_SECONDS="3600")
    assert (await end(d, *committed, COMMIT)).code == 0
    assert (await end(d, *rolled, ROLLBACK)).code == 0
    await asyncio.sleep(0.7)  # a few check rounds
    tx_serve.restart(sig)
    await d.reconnect()
    for half in (committed, rolled):
        for kind in (COMMIT, ROLLBACK):
            assert "already settled" in ((await end(d, *half, kind)).remark or "")
    assert await bodies(d, "TR") == [b"paid"]
    # The unsettled one still settles, once, after the restart.
    assert (await end(d, *pending, COMMIT)).code == 0
    assert "already settled" in ((await end(d, *pending, COMMIT)).remark or "")
    assert await bodies(d, "TR") == [b"paid", b"pending"]


@pytest.mark.parametrize("tx_serve", [{"transactionTimeOut": 60_000}], indirect=True)
async def test_commit_already_stored_before_a_crash_is_not_stored_again(d: Driver, tx_serve: ServeProcess) -> None:
    """A crash between storing a commit's message and its op record leaves the message in its
    topic with no op: after the restart, a commit of that transaction writes only the op."""
    await d.create_topic("TS", 2)
    half = await send_half(d, "TS", b"stored")
    # What the crashed commit left: the committed copy (same UNIQ_KEY, sysFlag COMMIT), no op.
    ext: dict[str, object] = {
        "producerGroup": "PG", "topic": "TS", "defaultTopic": "TBW102", "defaultTopicQueueNums": 4, "queueId": 1,
        "sysFlag": SYSFLAG_COMMIT, "bornTimestamp": int(time.time() * 1000), "flag": 0,
        "properties": "PGROUP\x01PG\x02UNIQ_KEY\x01U-stored\x02", "reconsumeTimes": 0, "unitMode": False}
    assert (await d.call(RequestCode.SEND_MESSAGE, ext, b"stored")).code == 0
    tx_serve.restart(signal.SIGKILL)
    await d.reconnect()
    assert (await end(d, *half, COMMIT)).code == 0
    assert await bodies(d, "TS") == [b"stored"]
    assert await max_offset(d, OP) == 1
    assert "already settled" in ((await end(d, *half, COMMIT)).remark or "")
