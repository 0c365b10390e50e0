"""Retries on another broker: two ``logstore broker`` processes behind one ``logstore namesrv``."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from adapters.rocket.client import ClientConfig, Producer, SendStatus, new_message

from .cluster import create_topic, serve_available, two_brokers

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def test_sync_send_retries_on_the_other_broker_when_one_is_gone(tmp_path: Path) -> None:
    assert serve_available(), "`logstore` broker commands are not available"
    with two_brokers(tmp_path) as cluster:
        await create_topic(list(cluster.brokers.values()), cluster.namesrv, "Failover", 2)
        config = ClientConfig(namesrv_addr=cluster.namesrv, client_ip="127.0.0.1",
                              instance_name="failover")
        async with Producer("P_failover", client_config=config) as producer:
            mqs = await producer.fetch_publish_message_queues("Failover")
            assert {mq.broker_name for mq in mqs} == {"broker-a", "broker-b"}
            first = [await producer.send(new_message("Failover", b"x")) for _ in range(4)]
            assert {r.message_queue.broker_name for r in first} == {"broker-a", "broker-b"}
            # SIGKILL: no unregistration, so the route still lists broker-b for up to 120 s.
            cluster.procs["broker-b"].stop(signal.SIGKILL)
            results = [await producer.send(new_message("Failover", b"y%d" % i)) for i in range(10)]
        assert all(r.send_status == SendStatus.SEND_OK for r in results)
        assert {r.message_queue.broker_name for r in results} == {"broker-a"}
