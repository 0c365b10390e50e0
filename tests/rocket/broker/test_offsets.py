"""ConsumerOffsetManager in process: commits carried on pulls cost no save each and are saved
within the flush interval, a durable commit is saved before it returns, close saves the rest."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from adapters.rocket.broker.offsets import ConsumerOffsetManager
from adapters.rocket.broker.persist import JsonFile
from logstore import SimIO

pytestmark = pytest.mark.anyio


def manager(io: SimIO, flush_interval_s: float) -> ConsumerOffsetManager:
    def run_blocking(fn: Callable[[], None]) -> asyncio.Future[Any]:
        return asyncio.get_running_loop().run_in_executor(None, fn)

    return ConsumerOffsetManager(JsonFile(io, "/root", "consumerOffset.json"), run_blocking,
                                 flush_interval_s=flush_interval_s)


def on_disk(io: SimIO) -> dict[str, Any]:
    return JsonFile(io, "/root", "consumerOffset.json").load().get("offsetTable", {})


async def test_pull_commits_are_saved_once_per_interval() -> None:
    io = SimIO()
    offsets = manager(io, flush_interval_s=0.3)
    offsets.start()
    try:
        for i in range(1, 1001):
            assert offsets.advance("G", "T", i % 4, i)
        assert not offsets.advance("G", "T", 0, 3)  # never backwards
        await asyncio.sleep(0.1)
        assert offsets.saves == 0 and on_disk(io) == {} and offsets.dirty
        async with asyncio.timeout(5.0):  # one interval, plus slack for a busy machine
            while offsets.saves == 0:
                await asyncio.sleep(0.02)
        assert offsets.saves == 1 and not offsets.dirty
        assert on_disk(io) == {"T@G": {"0": 1000, "1": 997, "2": 998, "3": 999}}
        await asyncio.sleep(0.4)
        assert offsets.saves == 1  # nothing changed: no save
    finally:
        await offsets.close()


async def test_durable_commit_is_saved_before_it_returns_and_close_saves_the_rest() -> None:
    io = SimIO()
    offsets = manager(io, flush_interval_s=60.0)
    offsets.start()
    offsets.advance("G", "T", 0, 5)
    await asyncio.wait_for(offsets.commit("G", "T", 1, 7, durable=True), 5.0)
    assert on_disk(io) == {"T@G": {"0": 5, "1": 7}}
    offsets.advance("G", "T", 0, 9)
    await offsets.close()
    assert on_disk(io) == {"T@G": {"0": 9, "1": 7}}
    again = manager(io, flush_interval_s=60.0)
    assert again.query("G", "T", 0) == 9


def test_flush_interval_must_be_positive() -> None:
    with pytest.raises(ValueError):
        manager(SimIO(), flush_interval_s=0)
