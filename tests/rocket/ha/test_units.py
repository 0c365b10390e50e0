"""Broker groups without processes: config rules, the producer's latency-fault avoidance, the
client's choice of a group's broker, and the slave's adoption of its master's metadata."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.rocket.broker.config import BrokerConfig
from adapters.rocket.broker.offsets import ConsumerOffsetManager
from adapters.rocket.broker.persist import JsonFile
from adapters.rocket.broker.subscriptions import SubscriptionGroupManager
from adapters.rocket.broker.topics import TopicConfig, TopicConfigManager
from adapters.rocket.client import ClientConfig
from adapters.rocket.client.common import MessageQueue
from adapters.rocket.client.fault import MQFaultStrategy, not_available_duration_ms
from adapters.rocket.client.instance import MQClientInstance
from adapters.rocket.client.route import QueueData, TopicPublishInfo, TopicRouteData
from logstore.io import RealIO


@pytest.mark.parametrize(("keys", "error"), [
    ({"brokerRole": "SLAVE"}, "brokerId must be greater than 0"),
    ({"brokerRole": "SLAVE", "brokerId": "0"}, "brokerId must be greater than 0"),
    ({"brokerId": "1"}, "brokerId must be 0"),
    ({"brokerRole": "SYNC_MASTER", "brokerId": "2"}, "brokerId must be 0"),
    ({"brokerRole": "MASTER"}, "brokerRole must be one of"),
    ({"brokerRole": "SLAVE", "brokerId": "1", "haMasterAddress": "nohost"}, "haMasterAddress"),
    ({"accessMessageInMemoryMaxRatio": "101"}, "accessMessageInMemoryMaxRatio"),
    ({"slaveReadEnable": "yes"}, "slaveReadEnable must be true or false"),
    ({"busyPollMicros": "-1"}, "busyPollMicros must be between 0 and 10000"),
    ({"busyPollMicros": "10001"}, "busyPollMicros must be between 0 and 10000"),
])
def test_bad_group_configs_are_refused(keys: dict[str, str], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        BrokerConfig.load(None, keys)


def test_group_config_keys_and_defaults(tmp_path: Path) -> None:
    conf = tmp_path / "broker.conf"
    conf.write_text("brokerName=broker-a\nbrokerId=2\nbrokerRole=SLAVE\nlistenPort=20911\n"
                    "slaveReadEnable=true\nhaMasterAddress=10.0.0.1:10912\n")
    cfg = BrokerConfig.load(str(conf))
    assert (cfg.broker_role, cfg.broker_id, cfg.is_slave, cfg.slave_read_enable) == ("SLAVE", 2, True, True)
    assert cfg.ha_port == 20912 and cfg.ha_server_addr == "127.0.0.1:20912"  # haListenPort: listenPort + 1
    assert cfg.ha_master_address == "10.0.0.1:10912"
    master = BrokerConfig.load(None, {"haListenPort": "30000"})
    assert (master.broker_role, master.broker_id, master.ha_port, master.slave_read_enable) == \
        ("ASYNC_MASTER", 0, 30000, False)


# -- producer: latency-fault avoidance ------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


def publish_info() -> TopicPublishInfo:
    info = TopicPublishInfo("T", [MessageQueue("T", b, q) for b in ("broker-a", "broker-b") for q in range(2)])
    info._index = 0
    return info


def test_not_available_durations_follow_rocketmq_table() -> None:
    assert [not_available_duration_ms(ms) for ms in (0, 49, 100, 549, 550, 1000, 2000, 3000, 15000, 30000)] == \
        [0, 0, 0, 0, 30_000, 60_000, 120_000, 180_000, 600_000, 600_000]


def test_a_broker_that_just_failed_is_avoided_for_a_while() -> None:
    clock = Clock()
    strategy = MQFaultStrategy(enabled=True, clock=clock)
    info = publish_info()
    strategy.update_fault_item("broker-a", 5, isolation=True)  # a failed send counts as 30 s
    assert {strategy.select_one_message_queue(info, None).broker_name for _ in range(20)} == {"broker-b"}
    clock.now_s += 599
    assert not strategy.is_available("broker-a")
    clock.now_s += 2
    assert strategy.is_available("broker-a")
    assert {strategy.select_one_message_queue(info, None).broker_name for _ in range(20)} == {"broker-a", "broker-b"}


def test_slow_brokers_are_avoided_briefly_and_fast_ones_never() -> None:
    clock = Clock()
    strategy = MQFaultStrategy(enabled=True, clock=clock)
    strategy.update_fault_item("broker-a", 40, isolation=False)
    assert strategy.is_available("broker-a")
    strategy.update_fault_item("broker-a", 700, isolation=False)
    assert not strategy.is_available("broker-a")
    clock.now_s += 31
    assert strategy.is_available("broker-a")


def test_when_every_broker_is_penalised_the_one_back_soonest_is_picked() -> None:
    clock = Clock()
    strategy = MQFaultStrategy(enabled=True, clock=clock)
    info = publish_info()
    strategy.update_fault_item("broker-a", 0, isolation=True)  # 600 s
    strategy.update_fault_item("broker-b", 2500, isolation=False)  # 120 s
    assert strategy.select_one_message_queue(info, None).broker_name == "broker-b"


def test_off_by_default_a_retry_still_moves_to_another_broker() -> None:
    strategy = MQFaultStrategy()
    info = publish_info()
    strategy.update_fault_item("broker-a", 0, isolation=True)  # ignored: off
    assert strategy.is_available("broker-a")
    assert {strategy.select_one_message_queue(info, "broker-a").broker_name for _ in range(10)} == {"broker-b"}


# -- client: which broker of a group ------------------------------------------------------------------


def route(addrs: dict[int, str]) -> TopicRouteData:
    return TopicRouteData((QueueData("broker-a", 2, 2, 6),), {"broker-a": addrs})


@pytest.mark.anyio
async def test_find_broker_address_in_subscribe() -> None:
    instance = MQClientInstance(ClientConfig(namesrv_addr="127.0.0.1:1", client_ip="127.0.0.1"))
    try:
        instance.routes["T"] = route({0: "m:1", 1: "s1:1", 2: "s2:1"})
        find = instance.find_broker_addr_in_subscribe
        assert find("broker-a", 0) is not None and find("broker-a", 0).broker_addr == "m:1"  # type: ignore[union-attr]
        found = find("broker-a", 1)
        assert found is not None and (found.broker_addr, found.slave) == ("s1:1", True)
        instance.routes["T"] = route({0: "m:1", 2: "s2:1"})
        assert find("broker-a", 1).broker_addr == "s2:1"  # type: ignore[union-attr]  # RocketMQ tries id + 1
        instance.routes["T"] = route({1: "s1:1"})  # the master left the route
        found = find("broker-a", 0)
        assert found is not None and (found.broker_addr, found.slave) == ("s1:1", True)
        assert find("broker-a", 0, only_this_broker=True) is None
        assert find("broker-x", 0) is None
        # A master whose connection just failed is passed over while the group has a slave.
        instance.routes["T"] = route({0: "m:1", 1: "s1:1"})
        instance._unreachable["m:1"] = float("inf")
        assert find("broker-a", 0).broker_addr == "s1:1"  # type: ignore[union-attr]
        instance.routes["T"] = route({0: "m:1"})
        assert find("broker-a", 0).broker_addr == "m:1"  # type: ignore[union-attr]  # nothing better
    finally:
        await instance.shutdown()


def test_select_broker_addrs_takes_a_slave_of_a_group_without_master() -> None:
    r = TopicRouteData((), {"broker-a": {0: "a0", 1: "a1"}, "broker-b": {2: "b2", 1: "b1"}, "broker-c": {}})
    assert r.select_broker_addrs() == ["a0", "b1"]
    assert r.master_addrs() == ["a0"]


# -- slave: adopting the master's metadata ---------------------------------------------------------


def test_topic_and_group_tables_are_replaced_when_the_master_version_differs(tmp_path: Path) -> None:
    io = RealIO()
    topics = TopicConfigManager(JsonFile(io, str(tmp_path), "topics.json"))
    topics.put(TopicConfig("Old"))
    version = {"stateVersion": 0, "timestamp": 5, "counter": 9}
    assert topics.adopt([TopicConfig("New", 2, 2)], version)
    assert set(topics.topics) == {"New"} and topics.data_version == version
    assert not topics.adopt([TopicConfig("Other")], version)  # same version: nothing to do
    reloaded = TopicConfigManager(JsonFile(io, str(tmp_path), "topics.json"))
    assert set(reloaded.topics) == {"New"}

    groups = SubscriptionGroupManager(JsonFile(io, str(tmp_path), "subscriptionGroup.json"), True)
    groups.update({"groupName": "Mine"})
    assert groups.adopt({"G": {"groupName": "G", "retryMaxTimes": 3}}, version)
    assert set(groups.groups) == {"G"} and groups.wrapper()["dataVersion"] == version


@pytest.mark.anyio
async def test_offsets_are_overwritten_key_by_key(tmp_path: Path) -> None:
    io = RealIO()

    def run_now(fn):  # type: ignore[no-untyped-def]
        import asyncio

        fut = asyncio.get_running_loop().create_future()
        fut.set_result(fn())
        return fut

    offsets = ConsumerOffsetManager(JsonFile(io, str(tmp_path), "consumerOffset.json"), run_now)
    offsets.start()
    try:
        await offsets.commit("G", "T", 0, 9, durable=True)  # committed to the slave by a consumer
        await offsets.commit("G2", "T", 0, 4, durable=True)
        await offsets.adopt({"T@G": {0: 7, 1: 3}})
        assert offsets.offsets("G", "T") == {0: 7, 1: 3}  # the master's values win, also backwards
        assert offsets.offsets("G2", "T") == {0: 4}  # keys the master lacks stay
        assert offsets.wrapper()["offsetTable"] == {"T@G": {"0": 7, "1": 3}, "T@G2": {"0": 4}}
    finally:
        await offsets.close()


@pytest.mark.anyio
async def test_a_slave_takes_its_masters_queue_log_ids(tmp_path: Path) -> None:
    from adapters.rocket.broker.queues import QueueStore, encode_commitlog_offset
    from logstore import LogConfig, Store

    store = await Store.open(str(tmp_path / "store"))
    try:
        queues = QueueStore(store, JsonFile(store.io, store.root, "queueIds.json"), LogConfig())
        log_a, id_a = await queues.get_or_create("A", 0)  # made locally before the first sync: id 1
        await queues.get_or_create("Local", 0)  # id 2, which the master uses for another queue
        assert await queues.adopt_ids({"B.0": 1, "A.0": 2}, 3)
        assert queues.get("A", 0) == (log_a, 2)
        assert queues.by_commitlog_offset(encode_commitlog_offset(2, 5)) == ("A", 0, log_a, 5)
        local = queues.get("Local", 0)
        assert local is not None and local[1] >= 3  # renumbered past every id the master has
        _log_b, id_b = await queues.get_or_create("B", 0)
        assert id_b == 1  # created after the sync: the master's id
        _log_c, id_c = await queues.get_or_create("C", 0)
        assert id_c not in (1, 2, local[1])
        assert not await queues.adopt_ids({"B.0": 1, "A.0": 2}, 3)
        reloaded = QueueStore(store, JsonFile(store.io, store.root, "queueIds.json"), LogConfig())
        assert reloaded.get("A", 0) == (log_a, 2)
        assert id_a == 1
    finally:
        await store.close()


def test_a_saved_promotion_holds_until_broker_conf_changes(tmp_path: Path) -> None:
    from adapters.rocket.broker.role import ROLE_FILE, apply_saved_role

    io = RealIO()
    file = JsonFile(io, str(tmp_path), ROLE_FILE)
    file.save({"brokerRole": "ASYNC_MASTER", "brokerId": 0, "confBrokerRole": "SLAVE", "confBrokerId": 1})
    cfg = BrokerConfig.load(None, {"brokerRole": "SLAVE", "brokerId": "1"})
    apply_saved_role(cfg, file)
    assert (cfg.broker_role, cfg.broker_id) == ("ASYNC_MASTER", 0)
    changed = BrokerConfig.load(None, {"brokerRole": "SLAVE", "brokerId": "3"})
    apply_saved_role(changed, file)
    assert (changed.broker_role, changed.broker_id) == ("SLAVE", 3)
    assert not io.exists(file.path)  # broker.conf rules from now on
    again = BrokerConfig.load(None, {"brokerRole": "SLAVE", "brokerId": "1"})
    apply_saved_role(again, file)
    assert (again.broker_role, again.broker_id) == ("SLAVE", 1)
