"""The leader-epoch cache of one log: leader epoch -> the first offset written in that epoch.

Kafka's ``leader-epoch-checkpoint`` (KIP-101/279). Every batch carries the epoch of the leader
that wrote it (``batch.py``, outside the CRC); this cache is the index over those stamps that
replication asks "where does epoch E end here?" with, so a follower truncates a divergent tail
by epoch, never by high watermark (RELIABILITY.md class 7).

Persisted inside the store checkpoint (``checkpoint.py``) as ``[[epoch, start_offset], ...]``,
so it is written atomically with the recovery point it must agree with. Recovery drops entries
at or past the recovered end, re-adds entries for the tail scanned past the recovery point, and
rebuilds the whole cache from batch headers when an entry disagrees with the data (the data
wins, as for every derived file of the store; class 8).

Invariants: epochs strictly increase and start offsets strictly increase along the list.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

UNDEFINED_EPOCH = -1
UNDEFINED_OFFSET = -1


class EpochCache:
    __slots__ = ("_epochs", "_starts")

    def __init__(self, entries: Iterable[tuple[int, int]] = ()) -> None:
        self._epochs: list[int] = []
        self._starts: list[int] = []
        for epoch, start in entries:
            self.assign(epoch, start)

    def __repr__(self) -> str:
        return f"EpochCache({self.entries()})"

    def __len__(self) -> int:
        return len(self._epochs)

    def entries(self) -> list[tuple[int, int]]:
        return list(zip(self._epochs, self._starts, strict=True))

    @property
    def last_epoch(self) -> int:
        return self._epochs[-1] if self._epochs else UNDEFINED_EPOCH

    def assign(self, epoch: int, start_offset: int) -> bool:
        """Record that ``epoch`` starts at ``start_offset``. A known epoch, or one at or below
        the latest, changes nothing (returns False): an epoch starts once. An entry at the same
        start with a lower epoch (a leader that wrote nothing in its epoch) is replaced."""
        if epoch < 0 or start_offset < 0:
            return False
        if self._epochs and epoch <= self._epochs[-1]:
            return False
        if self._starts and start_offset < self._starts[-1]:
            raise ValueError(f"epoch {epoch} at {start_offset} starts before epoch "
                             f"{self._epochs[-1]} at {self._starts[-1]}")
        if self._starts and start_offset == self._starts[-1]:
            self._epochs.pop()
            self._starts.pop()
        self._epochs.append(epoch)
        self._starts.append(start_offset)
        return True

    def epoch_at(self, offset: int) -> int:
        """The epoch of the batch holding ``offset`` (UNDEFINED_EPOCH before the first entry)."""
        i = bisect.bisect_right(self._starts, offset) - 1
        return self._epochs[i] if i >= 0 else UNDEFINED_EPOCH

    def end_offset_for(self, epoch: int, log_end_offset: int) -> tuple[int, int]:
        """Kafka's OffsetsForLeaderEpoch: (the largest epoch <= ``epoch`` known here, the offset
        where that epoch ends, i.e. the next epoch's start or the log end). (UNDEFINED,
        UNDEFINED) when ``epoch`` is older than every entry."""
        i = bisect.bisect_right(self._epochs, epoch) - 1
        if i < 0:
            return UNDEFINED_EPOCH, UNDEFINED_OFFSET
        end = self._starts[i + 1] if i + 1 < len(self._starts) else log_end_offset
        return self._epochs[i], end

    def truncate_from_end(self, end_offset: int) -> None:
        """The log now ends at ``end_offset``: forget epochs that start at or after it."""
        while self._starts and self._starts[-1] >= end_offset:
            self._starts.pop()
            self._epochs.pop()

    def truncate_from_start(self, start_offset: int) -> None:
        """The log now starts at ``start_offset``: the entry covering it moves up to it."""
        i = bisect.bisect_right(self._starts, start_offset) - 1
        if i < 0:
            return
        del self._epochs[:i], self._starts[:i]
        self._starts[0] = max(self._starts[0], start_offset)

    def clear(self) -> None:
        self._epochs.clear()
        self._starts.clear()
