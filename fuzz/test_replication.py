"""The replication simulation (``fuzz/replication.py``) over a fixed seed set, its determinism,
and planted bugs it must catch."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from fuzz.replication import Violation, fingerprint, run_seed
from logstore.replication import leader as leader_mod
from logstore.replication import server as server_mod

SEEDS = range(1, 121)


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    logging.disable(logging.WARNING)  # the simulation's faults log warnings by the hundred
    yield
    logging.disable(logging.NOTSET)


def test_fixed_seeds_hold_every_oracle() -> None:
    totals = {"acked": 0, "truncations": 0, "leader_kills": 0, "promotions": 0}
    for seed in SEEDS:
        stats = run_seed(seed)  # raises Violation naming the seed
        for key in totals:
            totals[key] += getattr(stats, key)
    # the faults did happen: a run where nothing diverged would prove little
    assert totals["acked"] > 10_000 and totals["truncations"] > 50 and totals["leader_kills"] > 50


def test_a_seed_replays_exactly() -> None:
    assert fingerprint(run_seed(7)) == fingerprint(run_seed(7))


@contextlib.contextmanager
def planted(target: Any, name: str, replacement: Any) -> Iterator[None]:
    original = getattr(target, name)
    setattr(target, name, replacement)
    try:
        yield
    finally:
        setattr(target, name, original)


def _first_violation(seeds: range) -> str:
    for seed in seeds:
        try:
            run_seed(seed)
        except Violation as exc:
            return str(exc)
    raise AssertionError("the planted bug went unnoticed")


def test_canary_leader_acks_without_its_isr() -> None:
    """The high watermark ignores the followers (RELIABILITY.md class 4/5): an acknowledged
    write dies with its leader."""

    def advance(self: leader_mod.LeaderState, log: Any) -> int:
        log.set_high_watermark(log.committed_offset)
        st = self._state(log.name)
        if st.waiters:
            self._settle(log, st)
        return int(log.high_watermark)

    with planted(leader_mod.LeaderState, "_advance", advance):
        assert "acknowledged value" in _first_violation(range(1, 60))


def test_canary_no_divergence_check() -> None:
    """The leader never reports a divergence (class 7): replicas keep different values at
    one offset."""
    original = server_mod.ReplicaServer._check_partition

    def check(self: server_mod.ReplicaServer, replica_id: int, part: Any) -> Any:
        from logstore.replication import protocol as proto

        return original(self, replica_id, proto.FetchPartition(part.name, part.fetch_offset, -1))

    with planted(server_mod.ReplicaServer, "_check_partition", check):
        message = _first_violation(range(1, 60))
    assert "differs" in message or "beyond" in message or "lost" in message


def test_canary_a_replica_that_lost_data_may_lead() -> None:
    """Recovery never clears may_lead (class 5, KIP-966's last replica standing): a follower
    that lost its unsynced tail is elected and acknowledged writes vanish."""
    from logstore.store import Store

    original = Store._recover_replication

    def recover(self: Store, cp: Any) -> None:
        original(self, cp)
        self.may_lead = True

    with planted(Store, "_recover_replication", recover):
        assert "acknowledged value" in _first_violation(range(1, 60))


def test_canary_a_follower_starts_over_past_the_leader_start() -> None:
    """A follower behind a trimmed leader starts its log one past the leader's log start: the
    replicas hold different records at the same offsets."""
    from logstore.replication import follower as follower_mod

    original = follower_mod.Follower._restart_at

    async def restart_at(self: Any, lg: Any, offset: int) -> None:
        await original(self, lg, offset + 1)

    with planted(follower_mod.Follower, "_restart_at", restart_at):
        message = _first_violation(range(1, 60))
    assert "above any trim" in message or "differs" in message or "lost" in message, message
