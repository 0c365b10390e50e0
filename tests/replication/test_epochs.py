"""Divergence and truncation by leader epoch (KIP-101/279 scenarios), fencing, promotion."""

from __future__ import annotations

from typing import Any

import pytest

from logstore.errors import NotEligibleError
from logstore.replication import ReplicaServer, promote
from tests.replication.support import (
    ASYNC,
    SYNC,
    batch,
    epochs_of,
    follower_of,
    open_store,
    run,
    until,
    values,
)


def test_old_leader_with_an_uncommitted_tail_truncates_by_epoch(tmp_path: Any) -> None:
    """KIP-101 scenario: the leader wrote a tail no follower had, a follower was promoted and
    wrote different data at those offsets; the old leader, back as a follower, must drop its
    tail and take the new leader's (never keep two values at one offset)."""

    async def main() -> None:
        a = await open_store(str(tmp_path / "a"))
        b = await open_store(str(tmp_path / "b"))
        assert await promote(a) == 1
        la = await a.create_log("q-0", SYNC)
        for i in range(10):
            await la.append(batch(i))
        server_a = ReplicaServer(a)
        await server_a.start()
        fb = await follower_of(b, server_a, 1)
        await until(lambda: "q-0" in b.logs and b.log("q-0").end_offset == 10)
        await fb.stop()
        for i in range(10, 15):  # the uncommitted tail: B never sees it
            await la.append(batch(100 + i))
        await server_a.stop()
        assert await promote(b) == 2
        lb = b.log("q-0")
        for i in range(10, 13):
            await lb.append(batch(200 + i))
        assert lb.epochs.entries() == [(1, 0), (2, 10)]
        async with ReplicaServer(b) as server_b:
            fa = await follower_of(a, server_b, 0)
            await until(lambda: la.end_offset == 13 and fa.caught_up, what="the old leader converging")
            assert fa.truncations == 1
            await fa.stop()
        assert values(a, "q-0") == values(b, "q-0")
        assert epochs_of(a, "q-0") == [1] * 10 + [2] * 3
        assert la.epochs.entries() == [(1, 0), (2, 10)]
        assert a.leader_epoch == 2
        await a.close()
        await b.close()

    run(main)


def test_follower_with_an_epoch_the_leader_never_had(tmp_path: Any) -> None:
    """A follower holds epoch-2 data a short-lived leader wrote; the current leader (epoch 3)
    never had epoch 2: the follower truncates to where epoch 1 ends on both."""

    async def main() -> None:
        a, b, c = [await open_store(str(tmp_path / n)) for n in "abc"]
        await promote(a)
        la = await a.create_log("q-0", ASYNC)
        for i in range(6):
            await la.append(batch(i))
        async with ReplicaServer(a) as server_a:
            fb = await follower_of(b, server_a, 1)
            fc = await follower_of(c, server_a, 2)
            await until(lambda: all("q-0" in s.logs and s.log("q-0").end_offset == 6 for s in (b, c)))
            await fb.stop()
            await fc.stop()
        await promote(b, epoch=2)  # b leads briefly, writes, and nobody copies it
        for i in range(6, 9):
            await b.log("q-0").append(batch(50 + i))
        await promote(c, epoch=3)
        for i in range(6, 8):
            await c.log("q-0").append(batch(70 + i))
        async with ReplicaServer(c) as server_c:
            fb = await follower_of(b, server_c, 1)
            await until(lambda: fb.caught_up and b.log("q-0").end_offset == 8)
            await fb.stop()
        assert values(b, "q-0") == values(c, "q-0")
        assert epochs_of(b, "q-0") == [1] * 6 + [3] * 2
        for s in (a, b, c):
            await s.close()

    run(main)


def test_restart_keeps_a_tail_above_the_high_watermark(tmp_path: Any) -> None:
    """KIP-101's reason: a follower whose high watermark lags its end must not truncate to it
    on restart (HW-based truncation lost acknowledged data on fast failover)."""

    async def main() -> None:
        a = await open_store(str(tmp_path / "a"))
        b = await open_store(str(tmp_path / "b"))
        await promote(a)
        la = await a.create_log("q-0", SYNC)
        async with ReplicaServer(a) as server:
            fb = await follower_of(b, server, 1)
            for i in range(20):
                await la.append(batch(i))
            await until(lambda: "q-0" in b.logs and b.log("q-0").end_offset == 20)
            await fb.stop()
        await b.close()
        b = await open_store(str(tmp_path / "b"))
        assert b.log("q-0").end_offset == 20
        assert b.log("q-0").high_watermark <= 20
        assert b.log("q-0").epochs.entries() == [(1, 0)]
        await promote(b)
        assert values(b, "q-0") == values(a, "q-0")
        await a.close()
        await b.close()

    run(main)


def test_a_stale_leader_is_fenced(tmp_path: Any) -> None:
    """After a promotion, a follower that saw the new epoch refuses the old leader's data,
    and the old leader, told of the newer epoch, acknowledges no replicated write."""

    async def main() -> None:
        a, b, c = [await open_store(str(tmp_path / n)) for n in "abc"]
        await promote(a)
        la = await a.create_log("q-0", ASYNC)
        await la.append(batch(0))
        fenced: list[bool] = []
        server_a = ReplicaServer(a, on_fenced=lambda: fenced.append(True))
        await server_a.start()
        fb = await follower_of(b, server_a, 1)
        await until(lambda: "q-0" in b.logs and b.log("q-0").end_offset == 1)
        await fb.stop()
        await promote(b)  # epoch 2; a does not know
        async with ReplicaServer(b) as server_b:
            fc = await follower_of(c, server_b, 2)
            await until(lambda: fc.caught_up and c.leader_epoch == 2)
            await fc.stop()
        r = await la.append(batch(1))  # a still thinks it leads
        fc = await follower_of(c, server_a, 2)
        await until(lambda: server_a.fenced, what="the old leader learning of epoch 2")
        assert fenced == [True]
        assert not await server_a.wait_replicated("q-0", r.last_offset + 1, min_insync=1, timeout=0.1)
        assert c.log("q-0").end_offset == 1  # nothing of the stale leader's
        assert fc.last_error is not None and "stale" in fc.last_error
        await fc.stop()
        await server_a.stop()
        for s in (a, b, c):
            await s.close()

    run(main)


def test_may_lead_is_cleared_by_a_cut_and_restored_by_catching_up(tmp_path: Any) -> None:
    async def main() -> None:
        a = await open_store(str(tmp_path / "a"))
        b = await open_store(str(tmp_path / "b"))
        await promote(a)
        la = await a.create_log("q-0", ASYNC)
        for i in range(10):
            await la.append(batch(i))
        async with ReplicaServer(a) as server:
            fb = await follower_of(b, server, 1)
            await until(lambda: "q-0" in b.logs and b.log("q-0").end_offset == 10)
            await fb.stop()
            seg = b.log("q-0").segments[-1].path
            await b.close()
            (tmp_path / "b" / ".clean_shutdown").unlink()
            with open(seg, "r+b") as f:  # a torn tail past the recovery point
                f.seek(0, 2)
                f.write(b"\x00" * 10 + b"\xff" * 50)
            import logstore.checkpoint as ckpt
            from logstore.io import RealIO
            cp = ckpt.read(RealIO(), str(tmp_path / "b"))
            assert cp is not None
            cp.logs["q-0"].recovery_point = 5
            ckpt.write(RealIO(), str(tmp_path / "b"), cp)
            b = await open_store(str(tmp_path / "b"))
            assert b.report.logs["q-0"].bytes_cut == 60
            assert not b.may_lead
            with pytest.raises(NotEligibleError):
                await promote(b)
            await b.close()
            b = await open_store(str(tmp_path / "b"))
            assert not b.may_lead  # persisted, not only a property of the last recovery
            fb = await follower_of(b, server, 1)
            await until(lambda: fb.caught_up and b.may_lead)
            await fb.stop()
        await b.close()
        b = await open_store(str(tmp_path / "b"))
        assert b.may_lead
        assert await promote(b) == 2
        await a.close()
        await b.close()

    run(main)
