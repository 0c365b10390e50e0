"""Promotion: make a replica's store the leader of a new epoch (fencing the old leader)."""

from __future__ import annotations

from logstore.errors import LogstoreError, NotEligibleError
from logstore.store import Store


async def promote(store: Store, *, epoch: int | None = None, force: bool = False) -> int:
    """Begin leader epoch ``epoch`` (default: one above the newest this store has seen) and
    return it. Persisted before it takes effect: every append after this returns is stamped
    with it, and followers that have seen it refuse the old leader's data. Refused with
    NotEligibleError while ``store.may_lead`` is false (recovery cut data here and it has not
    caught up since: RELIABILITY.md class 5) unless ``force`` (an operator's unclean
    election, which may lose acknowledged data). Stop this store's Follower first."""
    if not store.may_lead and not force:
        raise NotEligibleError(f"store {store.root} may not lead: its recovery cut data and it has not caught up since")
    new_epoch = store.leader_epoch + 1 if epoch is None else epoch
    if new_epoch <= store.leader_epoch:
        raise LogstoreError(f"epoch {new_epoch} is not above the store's {store.leader_epoch}")
    await store.begin_leader_epoch(new_epoch)
    if not store.may_lead:
        await store.set_may_lead(True)
    return new_epoch
