"""The leader-epoch cache: its rules, its life in checkpoints and recovery, stamping, and the
follower append path (Log.append_replicated)."""

from __future__ import annotations

import pytest

from logstore import checkpoint as ckpt
from logstore.batch import EPOCH, EPOCH_OFFSET
from logstore.epochs import UNDEFINED_EPOCH, EpochCache
from logstore.errors import InvalidBatchError, LogstoreError
from tests.engine.conftest import SMALL, SMALL_SYNC, Env, batch, run


def test_cache_rules() -> None:
    c = EpochCache([(1, 0), (3, 10), (4, 20)])
    assert c.end_offset_for(1, 30) == (1, 10)
    assert c.end_offset_for(2, 30) == (1, 10)  # unknown epoch: the largest below it
    assert c.end_offset_for(4, 30) == (4, 30)
    assert c.end_offset_for(0, 30) == (UNDEFINED_EPOCH, -1)
    assert c.epoch_at(15) == 3 and c.epoch_at(0) == 1
    assert not c.assign(2, 25) and not c.assign(4, 25)  # never backwards, once per epoch
    with pytest.raises(ValueError):
        c.assign(5, 19)
    c.truncate_from_end(10)
    assert c.entries() == [(1, 0)]
    c.assign(5, 12)
    c.truncate_from_start(11)
    assert c.entries() == [(1, 11), (5, 12)]
    c.assign(6, 12)  # an epoch that wrote nothing is replaced at the same start
    assert c.entries() == [(1, 11), (6, 12)]


def test_appends_are_stamped_with_the_store_epoch_and_cached(env: Env) -> None:
    async def main() -> None:
        store = await env.open()
        log = await store.create_log("a", SMALL_SYNC)
        await log.append(batch(0))
        await store.begin_leader_epoch(3)
        await log.append(batch(1))
        await log.append(batch(2))
        assert [h.leader_epoch for h, _ in log.iter_batches(0)] == [0, 3, 3]
        assert log.epochs.entries() == [(0, 0), (3, 1)]
        with pytest.raises(LogstoreError):
            await store.begin_leader_epoch(3)
        await store.close()
        store = await env.open()
        assert store.leader_epoch == 3
        assert store.log("a").epochs.entries() == [(0, 0), (3, 1)]
        assert not store.report.logs["a"].epochs_rebuilt
        await store.close()

    run(main)


def test_recovery_extends_the_cache_from_the_tail_and_rebuilds_a_wrong_one(env: Env) -> None:
    async def main() -> None:
        store = await env.open(checkpoint_interval_ms=10**9)
        log = await store.create_log("a", SMALL)
        for i in range(5):
            await log.append(batch(i))
        await store.checkpoint()
        await store.begin_leader_epoch(2)
        for i in range(5, 8):
            await log.append(batch(i))
        await log.flush()
        # the epoch-2 entry reached a checkpoint (begin_leader_epoch writes one); make it lost
        cp = ckpt.read(env.io, env.root)
        assert cp is not None and cp.logs["a"].epochs == [(0, 0), (2, 5)]
        cp.logs["a"].epochs = [(0, 0)]
        cp.leader_epoch = 0
        ckpt.write(env.io, env.root, cp)
        env.crash(store)
        store = await env.open()
        assert store.log("a").epochs.entries() == [(0, 0), (2, 5)]
        assert store.leader_epoch == 2  # never below the data
        await store.close()
        cp = ckpt.read(env.io, env.root)
        assert cp is not None
        cp.logs["a"].epochs = [(0, 0), (2, 3)]  # wrong: the batch at 3 has epoch 0
        ckpt.write(env.io, env.root, cp)
        store = await env.open()
        assert store.log("a").epochs.entries() == [(0, 0), (2, 5)]
        assert store.report.logs["a"].epochs_rebuilt
        await store.close()

    run(main)


def test_old_checkpoints_without_replication_fields_still_open(env: Env) -> None:
    async def main() -> None:
        store = await env.open()
        log = await store.create_log("a", SMALL)
        await log.append(batch(0))
        await store.close()
        raw = env.io.read_all(env.path("checkpoint"))
        _head, _, body = raw.partition(b"\n")
        import json

        import crc32c

        doc = json.loads(body)
        del doc["leader_epoch"], doc["may_lead"]
        for v in doc["logs"].values():
            del v["high_watermark"], v["epochs"]
        body = json.dumps(doc).encode()
        ckpt.write_atomic(env.io, env.path("checkpoint"), f"logstore-checkpoint 1 {crc32c.crc32c(body):08x}\n".encode() + body)
        store = await env.open()
        assert store.log("a").epochs.entries() == [(0, 0)]
        assert store.may_lead and store.leader_epoch == 0
        await store.close()

    run(main)


def _stamped(start: int, count: int, epoch: int) -> bytearray:
    out = bytearray()
    for i in range(count):
        b = batch(start + i)
        b[0:8] = (start + i).to_bytes(8, "big")
        EPOCH.pack_into(b, EPOCH_OFFSET, epoch)
        out += b
    return out


def test_append_replicated_checks_everything_before_writing(env: Env) -> None:
    async def main() -> None:
        store = await env.open()
        log = await store.create_log("a", SMALL)
        assert log.append_replicated(_stamped(0, 3, 1)) == 3
        assert log.epochs.entries() == [(1, 0)]
        bad = _stamped(3, 3, 2)
        bad[-1] ^= 0xFF  # CRC of the last batch
        with pytest.raises(InvalidBatchError):
            log.append_replicated(bad)
        with pytest.raises(InvalidBatchError):
            log.append_replicated(_stamped(4, 1, 2))  # a gap
        with pytest.raises(InvalidBatchError):
            log.append_replicated(_stamped(3, 1, 0))  # epoch going down
        assert log.end_offset == 3 and log.epochs.entries() == [(1, 0)]
        assert log.append_replicated(_stamped(3, 2, 2)) == 5
        assert log.epochs.entries() == [(1, 0), (2, 3)]
        assert [r.offset for r in log.read_records(0)] == [0, 1, 2, 3, 4]
        await log.truncate_to(3)
        assert log.epochs.entries() == [(1, 0)]
        await store.close()
        store = await env.open()
        assert store.log("a").epochs.entries() == [(1, 0)]
        assert store.log("a").end_offset == 3
        await store.close()

    run(main)
