"""RemotingServer and RemotingClient against each other and against raw sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest

from adapters.rocket.remoting import (
    LATER,
    Connection,
    Later,
    RemotingClient,
    RemotingClosedError,
    RemotingCommand,
    RemotingConnectError,
    RemotingServer,
    RemotingTimeoutError,
    RequestCode,
    ResponseCode,
    SerializeType,
    encode_frame,
)
from adapters.rocket.remoting.connection import FRAMES_PER_TURN

from .helpers import RawPeer

pytestmark = pytest.mark.anyio

ECHO = 9001
SLOW = 9002
BOOM = 9003
CALL_BACK = 9004


@pytest.fixture(params=[pytest.param(("asyncio", {}), id="asyncio"),
                        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop")])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, bool]]:
    """Every test on asyncio's own loop and on uvloop, which the broker and the bench run on
    (its transports call ``connection_made`` later and are no asyncio.Transport subclasses)."""
    return request.param  # type: ignore[no-any-return]


async def echo(conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
    return cmd.make_response(ResponseCode.SUCCESS, cmd.remark, cmd.ext_fields, cmd.body)


async def slow(conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
    await asyncio.sleep(float(cmd.ext_fields["sleep"]))
    return cmd.make_response(ResponseCode.SUCCESS, ext_fields=cmd.ext_fields)


async def boom(conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
    raise RuntimeError("handler exploded")


@asynccontextmanager
async def running_server(**kwargs: Any) -> AsyncIterator[RemotingServer]:
    server = RemotingServer("127.0.0.1", 0, **kwargs)
    server.register(ECHO, echo)
    server.register(SLOW, slow)
    server.register(BOOM, boom)
    async with server:
        yield server


async def assert_serves_others(server: RemotingServer) -> None:
    async with RemotingClient() as client:
        cmd = RemotingCommand.request(ECHO, {"still": "alive"})
        response = await client.invoke(server.address, cmd, 5.0)
    assert response.code == ResponseCode.SUCCESS
    assert response.ext_fields == {"still": "alive"}


# -- normal exchanges ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(SerializeType))
async def test_echo_keeps_the_request_serialize_type(kind: SerializeType) -> None:
    async with running_server() as server, RemotingClient() as client:
        cmd = RemotingCommand.request(ECHO, {"queueId": 3, "batch": False}, b"body",
                                      serialize_type=kind)
        response = await client.invoke(server.address, cmd, 5.0)
    assert response.is_response
    assert response.opaque == cmd.opaque
    assert response.serialize_type == kind
    assert response.ext_fields == {"queueId": "3", "batch": "false"}
    assert response.body == b"body"


async def test_unknown_code_is_not_supported() -> None:
    async with running_server() as server, RemotingClient() as client:
        response = await client.invoke(server.address, RemotingCommand.request(4242), 5.0)
        assert response.code == 3  # REQUEST_CODE_NOT_SUPPORTED
        assert response.remark is not None and "4242" in response.remark
        await assert_serves_others(server)


async def test_handler_exception_becomes_system_error() -> None:
    async with running_server() as server, RemotingClient() as client:
        response = await client.invoke(server.address, RemotingCommand.request(BOOM), 5.0)
        assert response.code == ResponseCode.SYSTEM_ERROR
        assert response.remark is not None and "handler exploded" in response.remark
        await assert_serves_others(server)


async def test_requests_run_concurrently_and_answer_out_of_order() -> None:
    async with running_server() as server, RemotingClient() as client:
        finished: list[str] = []

        async def call(name: str, sleep_s: float) -> None:
            cmd = RemotingCommand.request(SLOW, {"sleep": sleep_s, "name": name})
            response = await client.invoke(server.address, cmd, 5.0)
            assert response.ext_fields["name"] == name
            finished.append(name)

        await asyncio.gather(call("slow", 0.3), call("fast", 0.01))
    assert finished == ["fast", "slow"]


async def test_a_burst_of_frames_is_dispatched_a_turn_at_a_time() -> None:
    """Frames that arrive together are handed on FRAMES_PER_TURN at a time: the handlers of the
    first ones run (and could answer) before the rest of the burst is dispatched."""
    seen_at_start: list[int] = []

    async def record(conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        seen_at_start.append(conn.frames_dispatched)
        return cmd.make_response(ResponseCode.SUCCESS)

    burst = FRAMES_PER_TURN + 8
    async with running_server() as server:
        server.register(RequestCode.UPDATE_CONSUMER_OFFSET, record)
        peer = await RawPeer.open(server.port)
        frames = []
        for i in range(burst):
            cmd = RemotingCommand.request(RequestCode.UPDATE_CONSUMER_OFFSET)
            cmd.opaque = i + 1
            frames.append(encode_frame(cmd))
        await peer.send(b"".join(frames))
        opaques = sorted([(await peer.read_command()).opaque for _ in range(burst)])
        assert opaques == list(range(1, burst + 1))
        await peer.close()
    assert 0 < seen_at_start[0] <= FRAMES_PER_TURN  # not the whole burst (a write this small arrives whole)
    assert seen_at_start[-1] == burst


async def test_oneway_gets_no_response() -> None:
    seen = asyncio.Event()

    async def record(conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        seen.set()
        return cmd.make_response(ResponseCode.SUCCESS)

    async with running_server() as server:
        server.register(RequestCode.UPDATE_CONSUMER_OFFSET, record)
        peer = await RawPeer.open(server.port)
        oneway = RemotingCommand.request(RequestCode.UPDATE_CONSUMER_OFFSET, oneway=True)
        oneway.opaque = 1
        unknown_oneway = RemotingCommand.request(777, oneway=True)
        unknown_oneway.opaque = 2
        follow_up = RemotingCommand.request(ECHO)
        follow_up.opaque = 3
        await peer.send(encode_frame(oneway) + encode_frame(unknown_oneway))
        await asyncio.wait_for(seen.wait(), 5.0)
        await peer.send(encode_frame(follow_up))
        response = await peer.read_command()
        assert response.opaque == 3  # nothing came back for opaque 1 or 2
        await peer.close()

        async with RemotingClient() as client:
            await client.invoke_oneway(server.address, RemotingCommand.request(ECHO))


async def test_server_to_client_request_over_the_same_connection() -> None:
    async def ask_client(conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        check = RemotingCommand.request(RequestCode.CHECK_TRANSACTION_STATE, {"msgId": "m1"})
        answer = await conn.invoke(check, 5.0)
        return cmd.make_response(ResponseCode.SUCCESS, remark=answer.remark)

    async def on_check(conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        return cmd.make_response(ResponseCode.SUCCESS, remark=f"commit {cmd.ext_fields['msgId']}")

    async with running_server() as server, RemotingClient() as client:
        server.register(CALL_BACK, ask_client)
        client.register(RequestCode.CHECK_TRANSACTION_STATE, on_check)
        response = await client.invoke(server.address, RemotingCommand.request(CALL_BACK), 5.0)
    assert response.code == ResponseCode.SUCCESS
    assert response.remark == "commit m1"


async def test_server_invoke_times_out_when_client_does_not_answer() -> None:
    async def ask_client(conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        with pytest.raises(RemotingTimeoutError):
            await conn.invoke(RemotingCommand.request(RequestCode.CHECK_TRANSACTION_STATE), 0.1)
        return cmd.make_response(ResponseCode.SUCCESS, remark="timed out as expected")

    async def never(conn: Connection, cmd: RemotingCommand) -> None:
        await asyncio.sleep(10)

    async with running_server() as server, RemotingClient() as client:
        server.register(CALL_BACK, ask_client)
        client.register(RequestCode.CHECK_TRANSACTION_STATE, never)
        response = await client.invoke(server.address, RemotingCommand.request(CALL_BACK), 5.0)
    assert response.remark == "timed out as expected"


# -- malformed input against a live server ---------------------------------------------------


@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # garbage: the "length" is ~1.2 GB
    struct.pack(">i", 0x7FFFFFFF) + b"\0" * 16,  # claims 2 GiB
    struct.pack(">I", 0x80000000) + b"\0" * 16,  # claims 2 GiB, negative as int32
    struct.pack(">i", 1) + b"\0",  # shorter than the header-length field
    struct.pack(">iI", 8, 100) + b"\0" * 4,  # header longer than the frame
    struct.pack(">iI", 6, (5 << 24) | 2) + b"{}",  # unknown serialize type
    struct.pack(">iI", 12, 8) + b"not json",  # header not JSON, opaque unrecoverable
])
async def test_bad_frames_close_only_that_connection(data: bytes) -> None:
    async with running_server() as server:
        bystander = await RawPeer.open(server.port)
        peer = await RawPeer.open(server.port)
        await peer.send(data)
        assert await peer.closed_by_peer()
        await peer.close()
        await assert_serves_others(server)
        probe = RemotingCommand.request(ECHO)
        probe.opaque = 5
        await bystander.send(encode_frame(probe))
        assert (await bystander.read_command()).opaque == 5
        await bystander.close()


async def test_header_with_recoverable_opaque_gets_system_error() -> None:
    async with running_server() as server:
        peer = await RawPeer.open(server.port)
        header = b'{"code":9001,"opaque":31,"extFields":{'
        await peer.send(struct.pack(">iI", 4 + len(header), len(header)) + header)
        response = await peer.read_command()
        assert response.opaque == 31 and response.is_response
        assert response.code == ResponseCode.SYSTEM_ERROR
        assert response.remark is not None and "malformed request header" in response.remark
        header = orjson.dumps({"code": "not a number", "opaque": 32})
        await peer.send(struct.pack(">iI", 4 + len(header), len(header)) + header)
        assert (await peer.read_command()).opaque == 32
        ok = RemotingCommand.request(ECHO)  # the connection stays usable
        ok.opaque = 33
        await peer.send(encode_frame(ok))
        response = await peer.read_command()
        assert (response.opaque, response.code) == (33, ResponseCode.SUCCESS)
        await peer.close()


async def test_frame_limit_is_enforced_on_a_small_server() -> None:
    async with running_server(frame_bytes_max=1024) as server, RemotingClient() as client:
        big = RemotingCommand.request(ECHO, body=b"x" * 2000)
        with pytest.raises(RemotingClosedError):
            await client.invoke(server.address, big, 5.0)
        # a small request whose response would be too big gets a SYSTEM_ERROR instead
        server.register(BOOM, lambda c, cmd: _big_response(cmd))
        response = await client.invoke(server.address, RemotingCommand.request(BOOM), 5.0)
        assert response.code == ResponseCode.SYSTEM_ERROR
        assert response.remark is not None and "exceeds" in response.remark


async def _big_response(cmd: RemotingCommand) -> RemotingCommand:
    return cmd.make_response(ResponseCode.SUCCESS, body=b"y" * 4000)


async def test_pending_request_limit_answers_system_busy() -> None:
    release = asyncio.Event()

    async def blocked(conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        await release.wait()
        return cmd.make_response(ResponseCode.SUCCESS)

    async with running_server(pending_requests_max=2) as server, RemotingClient() as client:
        server.register(SLOW, blocked)
        calls = [asyncio.create_task(client.invoke(server.address,
                                                   RemotingCommand.request(SLOW), 5.0))
                 for _ in range(2)]
        await asyncio.sleep(0.1)
        busy = await client.invoke(server.address, RemotingCommand.request(SLOW), 5.0)
        assert busy.code == ResponseCode.SYSTEM_BUSY
        release.set()
        assert [r.code for r in await asyncio.gather(*calls)] == [0, 0]


async def test_connection_limit() -> None:
    async with running_server(connections_max=1) as server:
        first = await RawPeer.open(server.port)
        await asyncio.sleep(0.05)
        second = await RawPeer.open(server.port)
        assert await second.closed_by_peer()
        probe = RemotingCommand.request(ECHO)
        probe.opaque = 1
        await first.send(encode_frame(probe))
        assert (await first.read_command()).code == ResponseCode.SUCCESS
        await first.close()
        await second.close()
        await asyncio.sleep(0.05)
        await assert_serves_others(server)


# -- client behaviour ------------------------------------------------------------------------


async def test_client_fails_pending_requests_when_the_connection_drops() -> None:
    async def hang_up(conn: Connection, cmd: RemotingCommand) -> None:
        await asyncio.sleep(0.05)
        conn.close("test hangs up")

    async with running_server() as server, RemotingClient() as client:
        server.register(SLOW, hang_up)
        with pytest.raises(RemotingClosedError, match="closed"):
            await client.invoke(server.address, RemotingCommand.request(SLOW), 5.0)
        # the next invoke reconnects lazily
        response = await client.invoke(server.address, RemotingCommand.request(ECHO), 5.0)
        assert response.code == ResponseCode.SUCCESS


async def test_client_timeout_and_connect_error() -> None:
    async with running_server() as server, RemotingClient(connect_timeout_s=1.0) as client:
        cmd = RemotingCommand.request(SLOW, {"sleep": 1})
        with pytest.raises(RemotingTimeoutError, match="no response"):
            await client.invoke(server.address, cmd, 0.05)
        port = server.port
    async with RemotingClient(connect_timeout_s=1.0) as client:
        with pytest.raises(RemotingConnectError):
            await client.invoke(f"127.0.0.1:{port}", RemotingCommand.request(ECHO), 1.0)


async def test_client_answers_unknown_server_requests() -> None:
    async def ask(conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        answer = await conn.invoke(RemotingCommand.request(RequestCode.NOTIFY_CONSUMER_IDS_CHANGED),
                                   5.0)
        return cmd.make_response(ResponseCode.SUCCESS, remark=str(answer.code))

    async with running_server() as server, RemotingClient() as client:
        server.register(CALL_BACK, ask)
        response = await client.invoke(server.address, RemotingCommand.request(CALL_BACK), 5.0)
    assert response.remark == str(int(ResponseCode.REQUEST_CODE_NOT_SUPPORTED))


async def test_busy_polling_runs_for_its_window_after_each_write_then_stops() -> None:
    """With a window the server and the client keep their loops polling after they write (the
    requests and answers still match); past the window the polling stops; window 0 never polls."""
    async with running_server(busy_poll_us=3000) as server, RemotingClient(busy_poll_us=3000) as client:
        for i in range(5):
            resp = await client.invoke(server.address, RemotingCommand.request(ECHO, {"i": i}), 2.0)
            assert resp.ext_fields == {"i": str(i)}
        assert server.busy_poll.turns > 0 and client.busy_poll.turns > 0
        await asyncio.sleep(0.02)  # well past the window
        settled = (server.busy_poll.turns, client.busy_poll.turns)
        await asyncio.sleep(0.02)
        assert (server.busy_poll.turns, client.busy_poll.turns) == settled
        before = server.busy_poll.turns
        await client.invoke(server.address, RemotingCommand.request(ECHO), 2.0)
        await asyncio.sleep(0)
        assert server.busy_poll.turns > before  # a new write starts a new window
    async with running_server() as server, RemotingClient() as client:
        await client.invoke(server.address, RemotingCommand.request(ECHO), 2.0)
        await asyncio.sleep(0.01)
        assert server.busy_poll.turns == 0 and client.busy_poll.turns == 0 and not server.busy_poll.enabled


@pytest.mark.parametrize("window", [-1, 10_001])
def test_busy_poll_window_out_of_range_is_refused(window: int) -> None:
    with pytest.raises(ValueError, match="busy poll window"):
        RemotingServer("127.0.0.1", 0, busy_poll_us=window)


GROUPED = 9005


def _burst(codes: list[int], oneway: frozenset[int] = frozenset()) -> bytes:
    frames = []
    for i, code in enumerate(codes, start=1):
        cmd = RemotingCommand.request(code, {"i": i}, oneway=i in oneway)
        cmd.opaque = i
        frames.append(encode_frame(cmd))
    return b"".join(frames)


async def test_group_codes_read_together_reach_the_group_handler_in_order() -> None:
    """Requests of a group code read together go to the group handler as one list (at most
    FRAMES_PER_TURN of them); a request of another code hands on the group before it, so they
    start in the order read; each gets its own answer, a oneway one none."""
    started: list[str] = []

    async def group(conn: Connection, cmds: list[RemotingCommand]) -> list[RemotingCommand | None]:
        started.append("g" + ",".join(c.ext_fields["i"] for c in cmds))
        return [c.make_response(ResponseCode.SUCCESS, ext_fields={"n": len(cmds)}) for c in cmds]

    async def alone(conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        started.append("e" + cmd.ext_fields["i"])
        return cmd.make_response(ResponseCode.SUCCESS)

    async with running_server() as server:
        server.register(ECHO, alone)
        server.register_group([GROUPED], group)
        peer = await RawPeer.open(server.port)
        await peer.send(_burst([GROUPED, GROUPED, GROUPED, ECHO, GROUPED, GROUPED, GROUPED], oneway=frozenset({7})))
        answers = {c.opaque: c for c in [await peer.read_command() for _ in range(6)]}
        assert sorted(answers) == [1, 2, 3, 4, 5, 6]
        assert [answers[i].ext_fields.get("n") for i in (1, 2, 3, 5, 6)] == ["3", "3", "3", "3", "3"]
        assert started == ["g1,2,3", "e4", "g5,6,7"]

        started.clear()
        burst = FRAMES_PER_TURN + 5
        await peer.send(_burst([GROUPED] * burst))
        assert sorted([(await peer.read_command()).opaque for _ in range(burst)]) == list(range(1, burst + 1))
        sizes = [len(s[1:].split(",")) for s in started]
        assert sum(sizes) == burst and max(sizes) <= FRAMES_PER_TURN
        await peer.close()


@pytest.mark.parametrize("broken", ["raises", "miscounts"])
async def test_a_failing_group_handler_answers_each_request_with_system_error(broken: str) -> None:
    async def group(conn: Connection, cmds: list[RemotingCommand]) -> list[RemotingCommand | None]:
        if broken == "raises":
            raise RuntimeError("group exploded")
        return [cmds[0].make_response(ResponseCode.SUCCESS)]

    async with running_server() as server:
        server.register_group([GROUPED], group)
        peer = await RawPeer.open(server.port)
        await peer.send(_burst([GROUPED, GROUPED, GROUPED]))
        answers = [await peer.read_command() for _ in range(3)]
        assert sorted(a.opaque for a in answers) == [1, 2, 3]
        assert {a.code for a in answers} == {ResponseCode.SYSTEM_ERROR}
        await peer.close()
        await assert_serves_others(server)


async def test_without_a_group_handler_each_request_goes_to_its_own() -> None:
    async def group(conn: Connection, cmds: list[RemotingCommand]) -> list[RemotingCommand | None]:
        raise AssertionError("unregistered")

    async with running_server() as server:
        server.register_group([ECHO], group)
        server.register_group([ECHO], None)
        peer = await RawPeer.open(server.port)
        await peer.send(_burst([ECHO, ECHO, 777]))
        answers = {c.opaque: c for c in [await peer.read_command() for _ in range(3)]}
        assert [answers[i].code for i in (1, 2, 3)] == [ResponseCode.SUCCESS, ResponseCode.SUCCESS,
                                                        ResponseCode.REQUEST_CODE_NOT_SUPPORTED]
        assert answers[2].ext_fields == {"i": "2"}
        await peer.close()


async def test_grouped_requests_count_against_the_pending_limit() -> None:
    release = asyncio.Event()

    async def group(conn: Connection, cmds: list[RemotingCommand]) -> list[RemotingCommand | None]:
        await release.wait()
        return [c.make_response(ResponseCode.SUCCESS) for c in cmds]

    async with running_server(pending_requests_max=2) as server:
        server.register_group([GROUPED], group)
        peer = await RawPeer.open(server.port)
        await peer.send(_burst([GROUPED, GROUPED, GROUPED]))
        busy = await peer.read_command()
        assert (busy.opaque, busy.code) == (3, ResponseCode.SYSTEM_BUSY)
        release.set()
        answers = [await peer.read_command() for _ in range(2)]
        assert sorted((a.opaque, a.code) for a in answers) == [(1, 0), (2, 0)]
        await peer.send(_burst([GROUPED]))  # the limit is free again
        assert (await peer.read_command()).code == ResponseCode.SUCCESS
        await peer.close()


async def test_a_group_taken_at_once_answers_now_or_later_and_counts_until_answered() -> None:
    """``now`` sees each group first, with no task: it answers some requests at once, takes
    others as LATER (answered through ``Connection.reply``, and pending until then), or
    declines the group, which then goes to the group handler."""
    later: list[tuple[Connection, list[RemotingCommand]]] = []
    seen: list[str] = []

    def now(conn: Connection, cmds: list[RemotingCommand]) -> list[RemotingCommand | Later | None] | None:
        seen.append(",".join(c.ext_fields["i"] for c in cmds))
        if len(cmds) == 1:
            return None  # declined
        later.append((conn, cmds[1:]))
        return [cmds[0].make_response(ResponseCode.SUCCESS, ext_fields={"by": "now"}), *[LATER] * (len(cmds) - 1)]

    async def group(conn: Connection, cmds: list[RemotingCommand]) -> list[RemotingCommand | None]:
        return [c.make_response(ResponseCode.SUCCESS, ext_fields={"by": "group"}) for c in cmds]

    async with running_server(pending_requests_max=3) as server:
        server.register_group([GROUPED], group, now)
        peer = await RawPeer.open(server.port)
        await peer.send(_burst([GROUPED, GROUPED, GROUPED]))
        first = await peer.read_command()
        assert (first.opaque, first.ext_fields["by"]) == (1, "now")
        await peer.send(_burst([GROUPED, GROUPED]))  # 2 and 3 still pending: one more fits, not two
        busy = await peer.read_command()
        assert busy.code == ResponseCode.SYSTEM_BUSY
        conn, cmds = later.pop()
        conn.reply(cmds, [c.make_response(ResponseCode.SUCCESS, ext_fields={"by": "reply"}) for c in cmds])
        answers = {c.opaque: c for c in [await peer.read_command() for _ in range(3)]}
        # The second burst's first request (opaque 1 again) was a group of one: declined, so
        # the group handler answered it.
        assert sorted((o, a.ext_fields["by"]) for o, a in answers.items()) == [(1, "group"), (2, "reply"), (3, "reply")]
        assert seen == ["1,2,3", "1"]
        await peer.send(_burst([GROUPED, GROUPED, GROUPED]))  # nothing pending now: all three fit
        assert sorted([(await peer.read_command()).opaque for _ in range(1)]) == [1]
        conn, cmds = later.pop()
        conn.reply(cmds, [c.make_response(ResponseCode.SUCCESS) for c in cmds])
        assert sorted([(await peer.read_command()).code for _ in range(2)]) == [0, 0]
        await peer.close()


async def test_a_failing_now_answers_each_request_with_system_error() -> None:
    def now(conn: Connection, cmds: list[RemotingCommand]) -> list[RemotingCommand | Later | None] | None:
        raise RuntimeError("now exploded")

    async def group(conn: Connection, cmds: list[RemotingCommand]) -> list[RemotingCommand | None]:
        raise AssertionError("not reached: now did not decline")

    async with running_server() as server:
        server.register_group([GROUPED], group, now)
        peer = await RawPeer.open(server.port)
        await peer.send(_burst([GROUPED, GROUPED]))
        answers = [await peer.read_command() for _ in range(2)]
        assert sorted((a.opaque, a.code) for a in answers) == [(1, ResponseCode.SYSTEM_ERROR), (2, ResponseCode.SYSTEM_ERROR)]
        await peer.close()
        await assert_serves_others(server)


async def test_answers_given_at_once_to_a_peer_that_does_not_read_stop_the_reading() -> None:
    """A ``now`` handler answers at once, so no pending request bounds what a peer that never
    reads its answers can make the server hold: past the transport's high-water mark the
    connection stops reading (after at most FRAMES_PER_TURN more requests) until the answers
    drain. Other connections are served meanwhile."""
    seen = 0
    big = b"x" * (256 * 1024)

    def now(conn: Connection, cmds: list[RemotingCommand]) -> list[RemotingCommand | Later | None] | None:
        nonlocal seen
        seen += len(cmds)
        return [c.make_response(ResponseCode.SUCCESS, body=big) for c in cmds]

    async def group(conn: Connection, cmds: list[RemotingCommand]) -> list[RemotingCommand | None]:
        raise AssertionError("not reached: now takes every group")

    total = 400  # 100 MiB of answers, far past the kernel's socket buffers
    async with running_server() as server:
        server.register_group([GROUPED], group, now)
        peer = await RawPeer.open(server.port)
        await peer.send(_burst([GROUPED] * total))
        await asyncio.sleep(0.5)
        await assert_serves_others(server)
        held = seen
        assert held < total // 2, held
        got = [await peer.read_command() for _ in range(total)]
        assert sorted(c.opaque for c in got) == list(range(1, total + 1))
        assert all(len(c.body) == len(big) for c in got) and seen == total
        await peer.close()


async def test_why_a_connection_closed_is_kept() -> None:
    """The reason a connection closed, as its disconnect listeners see it: the peer hanging up
    between frames (its answer still sent), in the middle of one, and a frame over the limit."""
    async with running_server() as server:
        reasons: list[str | None] = []
        server.add_disconnect_listener(lambda conn: reasons.append(conn.close_reason))
        whole = encode_frame(RemotingCommand.request(ECHO, {"n": "1"}))
        for i, data in enumerate((whole, whole + whole[:7], struct.pack(">i", 2**31 - 1))):
            peer = await RawPeer.open(server.port)
            await peer.send(data)
            if i == 0:
                assert (await peer.read_command()).ext_fields == {"n": "1"}
            await peer.close()
            for _ in range(200):
                if len(reasons) > i:
                    break
                await asyncio.sleep(0.01)
        await assert_serves_others(server)
    assert reasons[:2] == ["closed by peer", "closed by peer in the middle of a frame"], reasons
    assert reasons[2] is not None and reasons[2].startswith("bad frame:"), reasons
