"""Producer features against real brokers: round-robin, the selectors, the route cache refresh
(pollNameServerInterval) and retries on another broker within sendMsgTimeout
(retryTimesWhenSendFailed / retryTimesWhenSendAsyncFailed, 2 each)."""

from __future__ import annotations

import asyncio
import itertools
import random
import signal
import time
from pathlib import Path

import orjson
import pytest

from adapters.rocket.client import (
    MQClientError,
    Producer,
    SelectMessageQueueByHash,
    SelectMessageQueueByRandom,
    SendResult,
    SendStatus,
    new_message,
)
from adapters.rocket.client._java import java_string_hash
from adapters.rocket.remoting import RemotingClient, RemotingCommand, RequestCode, ResponseCode

from .cluster import Serve, create_topic, serve_available, two_brokers
from .support import config, owned, push, topic, unique, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def test_round_robin_visits_every_queue_in_turn(rocket_serve: Serve) -> None:
    tpc = await topic(rocket_serve, queues=4)
    async with Producer(unique("P"), client_config=config(rocket_serve)) as producer:
        ids = [(await producer.send(new_message(tpc, b"rr"))).message_queue.queue_id for _ in range(12)]
        async_ids = [(await producer.send_async(new_message(tpc, b"a"))).message_queue.queue_id
                     for _ in range(4)]
        batch_id = (await producer.send_batch([new_message(tpc, b"b")])).message_queue.queue_id
    sequence = [*ids, *async_ids, batch_id]  # one position per topic, whatever the send mode
    assert all(b == (a + 1) % 4 for a, b in itertools.pairwise(sequence)), sequence


async def test_hash_and_random_selectors_pick_as_rocketmq_does(rocket_serve: Serve) -> None:
    tpc = await topic(rocket_serve, queues=4)
    async with Producer(unique("P"), client_config=config(rocket_serve)) as producer:
        # Hash: abs(arg.hashCode()) % queues, with Java's String.hashCode; the same order id
        # always lands on the same queue.
        for order_id in ("order-1", "order-42", "ORD_7", "x" * 40):
            want = abs(java_string_hash(order_id)) % 4
            for _ in range(2):
                r = await producer.send(new_message(tpc, b"h"), SelectMessageQueueByHash(), order_id)
                assert r.message_queue.queue_id == want
        # Random: the selector's generator alone decides (replayed here from the same seed).
        seed = random.randrange(1 << 30)
        replay = random.Random(seed)
        selector = SelectMessageQueueByRandom(random.Random(seed))
        got = [(await producer.send(new_message(tpc, b"r"), selector)).message_queue.queue_id
               for _ in range(24)]
        assert got == [replay.randrange(4) for _ in range(24)], f"seed {seed}"
        assert len(set(got)) > 1, f"seed {seed}"
        oneway_selected = SelectMessageQueueByHash()
        await producer.send_oneway(new_message(tpc, b"o"), oneway_selected, "order-1")


async def _route_queue_count(namesrv: str, tpc: str) -> int:
    async with RemotingClient() as client:
        response = await client.invoke(namesrv, RemotingCommand.request(
            RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": tpc}), 5.0)
        assert response.code == ResponseCode.SUCCESS
        return sum(int(q["writeQueueNums"]) for q in orjson.loads(response.body)["queueDatas"])


async def test_route_refresh_picks_up_a_new_queue_count(rocket_serve: Serve) -> None:
    tpc, group = await topic(rocket_serve, queues=2), unique("G")
    fast = config(rocket_serve, poll_name_server_interval_ms=300, rebalance_interval_ms=500)
    consumer, seen = push(rocket_serve, group, tpc, client_config=fast)
    async with Producer(unique("P"), client_config=fast) as refreshed, \
            Producer(unique("P"), client_config=config(rocket_serve)) as cached, consumer:
        assert len(await refreshed.fetch_publish_message_queues(tpc)) == 2
        assert len(await cached.fetch_publish_message_queues(tpc)) == 2
        assert owned(consumer, tpc) == [0, 1]
        await create_topic([rocket_serve.broker], rocket_serve.namesrv, tpc, queues=6)
        deadline = time.monotonic() + 10
        while await _route_queue_count(rocket_serve.namesrv, tpc) != 6:
            assert time.monotonic() < deadline, "the name server never routed 6 queues"
            await asyncio.sleep(0.1)

        async def publish_count() -> int:
            return len(await refreshed.fetch_publish_message_queues(tpc))

        deadline = time.monotonic() + 5
        while await publish_count() != 6:
            assert time.monotonic() < deadline, "the producer's route was never refreshed"
            await asyncio.sleep(0.1)
        # The default 30 s interval has not come round: that producer still uses its cache.
        assert len(await cached.fetch_publish_message_queues(tpc)) == 2
        # The consumer's refreshed route reaches its next rebalance (and it starts the new
        # queues at their end, CONSUME_FROM_LAST_OFFSET: so send only once it owns them).
        await wait_for(lambda: owned(consumer, tpc) == list(range(6)), 10, "consumer owning 6 queues")
        used = {(await refreshed.send(new_message(tpc, b"n%d" % i))).message_queue.queue_id
                for i in range(6)}
        assert used == set(range(6))
        await wait_for(lambda: len(seen.bodies()) == 6, 10, "every new message consumed")


async def test_sends_retry_on_another_broker_within_send_msg_timeout(tmp_path: Path) -> None:
    """broker-b hangs (SIGSTOP), then dies (SIGKILL), then broker-a dies too; the route keeps
    listing both (a killed broker does not unregister), so the producer keeps picking them."""
    assert serve_available(), "`logstore` broker commands are not available"
    timeout_ms = 1500
    with two_brokers(tmp_path) as cluster:
        tpc = unique("Retry")
        await create_topic(list(cluster.brokers.values()), cluster.namesrv, tpc, 2)
        producer = Producer(unique("P"), client_config=config(cluster), send_msg_timeout_ms=timeout_ms)
        assert producer.retry_times_when_send_failed == 2
        assert producer.retry_times_when_send_async_failed == 2
        async with producer:
            assert {mq.broker_name for mq in await producer.fetch_publish_message_queues(tpc)} == {
                "broker-a", "broker-b"}
            # Hung broker: an attempt there spends the whole budget, and nothing outlives it.
            cluster.procs["broker-b"].popen.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]
            try:
                outcomes = []
                for i in range(4):
                    t0 = time.monotonic()
                    try:
                        r = await producer.send(new_message(tpc, b"h%d" % i))
                        outcomes.append(r.message_queue.broker_name)
                    except MQClientError:
                        outcomes.append("error")
                    assert time.monotonic() - t0 < timeout_ms / 1000 + 1.0
                # Round-robin over [a0, a1, b0, b1]: two of four sends pick broker-b first, and
                # as in RocketMQ a timed-out attempt leaves no time for another.
                assert sorted(outcomes) == ["broker-a", "broker-a", "error", "error"], outcomes
            finally:
                cluster.procs["broker-b"].popen.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
            # Dead broker: refused at once, retried on broker-a (sync, async, batch).
            cluster.procs["broker-b"].stop(signal.SIGKILL)
            sync = [await producer.send(new_message(tpc, b"s%d" % i)) for i in range(6)]
            done: list[SendResult] = []

            class Callback:
                def on_success(self, result: SendResult) -> None:
                    done.append(result)

                def on_exception(self, error: BaseException) -> None:
                    raise AssertionError(error)

            tasks = [producer.send_async(new_message(tpc, b"a%d" % i), Callback()) for i in range(6)]
            await asyncio.gather(*tasks)
            await wait_for(lambda: len(done) == 6, 5, "every async callback")
            batches = [await producer.send_batch([new_message(tpc, b"b")]) for _ in range(4)]
            for r in [*sync, *done, *batches]:
                assert r.send_status == SendStatus.SEND_OK
                assert r.message_queue.broker_name == "broker-a"
            # Both dead: 1 + 2 attempts, all refused, and the error says so well within the budget.
            cluster.procs["broker-a"].stop(signal.SIGKILL)
            t0 = time.monotonic()
            with pytest.raises(MQClientError, match="after 3 attempts"):
                await producer.send(new_message(tpc, b"lost"))
            assert time.monotonic() - t0 < timeout_ms / 1000
            errors: list[BaseException] = []

            class Failed:
                def on_success(self, result: SendResult) -> None:
                    raise AssertionError(result)

                def on_exception(self, error: BaseException) -> None:
                    errors.append(error)

            with pytest.raises(MQClientError):
                await producer.send_async(new_message(tpc, b"lost"), Failed())
            await wait_for(lambda: len(errors) == 1, 5, "the async failure callback")
