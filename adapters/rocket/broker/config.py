"""BrokerConfig: RocketMQ ``broker.conf`` keys, their defaults, and a java-properties reader.

Keys keep RocketMQ's names (``brokerName``, ``flushDiskType``, ...) in the file; attributes are
their snake_case twins. Unknown keys are kept in ``extra`` and logged, never fatal: a broker.conf
written for Apache RocketMQ loads here unchanged.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field, fields
from typing import Any

from adapters.rocket.remoting.busypoll import WINDOW_US_MAX
from logstore import FLUSH_ASYNC, FLUSH_SYNC
from logstore.affinity import parse_cpu_list

from .delay import DEFAULT_DELAY_LEVELS, parse_delay_levels

log = logging.getLogger(__name__)

SYNC_FLUSH = "SYNC_FLUSH"
ASYNC_FLUSH = "ASYNC_FLUSH"
ASYNC_MASTER = "ASYNC_MASTER"
SYNC_MASTER = "SYNC_MASTER"
SLAVE = "SLAVE"
BROKER_ROLES = (ASYNC_MASTER, SYNC_MASTER, SLAVE)
MASTER_ID = 0
#: busyPollMicros when broker.conf does not say: the window after an answer in which a client
#: sending one message at a time sends its next (it spends about 100 us between an answer and
#: its next request on this machine; measured in the README's "Busy polling by default").
BUSY_POLL_MICROS_DEFAULT = 100
CPU_AFFINITY_AUTO = "auto"
CPU_AFFINITY_OFF = "off"


@dataclass
class BrokerConfig:
    broker_name: str = "broker-a"
    broker_cluster_name: str = "DefaultCluster"
    broker_id: int = 0
    namesrv_addr: str = ""  # ';'-separated host:port list
    listen_port: int = 10911
    broker_ip1: str = "127.0.0.1"
    store_path_root_dir: str = "./data"
    flush_disk_type: str = ASYNC_FLUSH
    flush_interval_commit_log: int = 500  # ms, ASYNC_FLUSH
    auto_create_topic_enable: bool = False
    auto_create_subscription_group: bool = True
    default_topic_queue_nums: int = 8
    max_message_size: int = 4 * 1024 * 1024
    register_name_server_period: int = 30_000  # ms
    channel_expired_timeout: int = 120_000  # ms
    long_polling_enable: bool = True
    pull_held_max: int = 10_000  # long-polling pulls parked at once
    max_transfer_bytes_on_message_in_memory: int = 1024 * 1024  # per pull response
    max_transfer_count_on_message_in_memory: int = 1024  # per pull response
    flush_consumer_offset_interval: int = 5000  # ms: consumer offsets committed on pulls are saved this often
    sync_flush_timeout: int = 5000  # ms: FLUSH_DISK_TIMEOUT past this
    lock_expire_ms: int = 60_000  # rocketmq.broker.rebalance.lockMaxLiveTime
    file_reserved_time: int = 72  # hours
    message_delay_level: str = DEFAULT_DELAY_LEVELS  # delay levels 1..n (units s m h d)
    timer_max_delay_sec: int = 3 * 24 * 3600  # TIMER_* messages at most this far ahead
    timer_pending_max: int = 500_000  # TIMER_* messages waiting at once (memory: ~90 B each)
    transaction_check_interval: int = 30_000  # ms between check-back rounds
    transaction_time_out: int = 6_000  # ms: a half message younger than this is not checked
    transaction_check_max: int = 15  # checks before a half message goes to TRANS_CHECK_MAX_TIME_TOPIC
    # Master/slave groups (RocketMQ's classic HA): the brokers of a group share brokerName; the
    # master has brokerId 0, each slave its own brokerId > 0.
    broker_role: str = ASYNC_MASTER  # ASYNC_MASTER | SYNC_MASTER | SLAVE
    ha_listen_port: int = 0  # 0: listenPort + 1 (RocketMQ's 10912 beside 10911)
    ha_master_address: str = ""  # a slave's master HA address; empty: learnt from the name server
    slave_read_enable: bool = False  # a master may send slow consumers to a slave
    access_message_in_memory_max_ratio: int = 40  # % of RAM a consumer may lag before "slow"
    slave_sync_interval: int = 10_000  # ms between a slave's metadata syncs (RocketMQ: 10 s)
    ha_lag_time_max_ms: int = 30_000  # a slave this far behind is out of sync (Kafka's replica.lag.time.max.ms)
    # Not a RocketMQ key: poll the sockets this long after answering instead of sleeping until
    # the next request wakes the loop (remoting/busypoll.py), as Seastar's reactor (Redpanda,
    # ScyllaDB) polls a while before it sleeps. Lower latency for a client that sends again as
    # soon as it is answered, paid in CPU: at most this much per answer, none when idle, next
    # to none under load (the loop has work anyway). 0 turns it off.
    busy_poll_micros: int = BUSY_POLL_MICROS_DEFAULT
    # Not a RocketMQ key: the CPUs the broker process runs on. "auto": the CPU that takes the
    # interrupts of the store's block device, when one CPU takes them all (logstore/affinity.py:
    # each SYNC_FLUSH fsync then wakes the loop without a cross-CPU wake-up), else anywhere;
    # "off": anywhere; or a CPU list ("1", "0,2-3"). Set by ``logstore serve``/``broker``.
    cpu_affinity: str = CPU_AFFINITY_AUTO
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def namesrv_addrs(self) -> list[str]:
        return [a.strip() for a in self.namesrv_addr.split(";") if a.strip()]

    @property
    def log_flush(self) -> str:
        """logstore's flush policy for this flushDiskType."""
        return FLUSH_SYNC if self.flush_disk_type == SYNC_FLUSH else FLUSH_ASYNC

    @property
    def broker_addr(self) -> str:
        return f"{self.broker_ip1}:{self.listen_port}"

    @property
    def is_slave(self) -> bool:
        return self.broker_role == SLAVE

    @property
    def ha_port(self) -> int:
        """The port slaves replicate from (haListenPort, by default listenPort + 1)."""
        return self.ha_listen_port or self.listen_port + 1

    @property
    def ha_server_addr(self) -> str:
        return f"{self.broker_ip1}:{self.ha_port}"

    def validate(self) -> None:
        if self.flush_disk_type not in (SYNC_FLUSH, ASYNC_FLUSH):
            raise ValueError(f"flushDiskType must be {SYNC_FLUSH} or {ASYNC_FLUSH}, not {self.flush_disk_type!r}")
        if not 0 < self.max_message_size <= 64 * 1024 * 1024:
            raise ValueError("maxMessageSize must be between 1 B and 64 MiB")
        if not 1 <= self.default_topic_queue_nums <= 1024:
            raise ValueError("defaultTopicQueueNums must be between 1 and 1024")
        if not 0 <= self.listen_port <= 65535:
            raise ValueError("listenPort must be a TCP port")
        parse_delay_levels(self.message_delay_level)
        if self.flush_consumer_offset_interval < 1:
            raise ValueError("flushConsumerOffsetInterval must be positive (ms)")
        if self.timer_max_delay_sec < 1 or self.timer_pending_max < 1:
            raise ValueError("timerMaxDelaySec and timerPendingMax must be positive")
        self._validate_role()
        if not 0 <= self.busy_poll_micros <= WINDOW_US_MAX:
            raise ValueError(f"busyPollMicros must be between 0 and {WINDOW_US_MAX}")
        if self.cpu_affinity not in (CPU_AFFINITY_AUTO, CPU_AFFINITY_OFF):
            try:
                parse_cpu_list(self.cpu_affinity)
            except ValueError as exc:
                raise ValueError(f"cpuAffinity must be {CPU_AFFINITY_AUTO}, {CPU_AFFINITY_OFF} or a CPU list: {exc}") from None
        if self.transaction_check_interval < 1 or self.transaction_time_out < 0 or self.transaction_check_max < 0:
            raise ValueError("transactionCheckInterval must be positive; transactionTimeOut and "
                             "transactionCheckMax must not be negative")

    def _validate_role(self) -> None:
        """RocketMQ's BrokerStartup rules: a slave needs a brokerId above 0, a master is id 0."""
        if self.broker_role not in BROKER_ROLES:
            raise ValueError(f"brokerRole must be one of {', '.join(BROKER_ROLES)}, not {self.broker_role!r}")
        if self.is_slave and self.broker_id <= MASTER_ID:
            raise ValueError("a SLAVE's brokerId must be greater than 0")
        if not self.is_slave and self.broker_id != MASTER_ID:
            raise ValueError(f"a {self.broker_role}'s brokerId must be 0 (brokerId {self.broker_id} is for slaves)")
        if not 0 <= self.ha_listen_port <= 65535:
            raise ValueError("haListenPort must be a TCP port")
        if self.ha_master_address and not _is_host_port(self.ha_master_address):
            raise ValueError(f"haMasterAddress must be host:port, not {self.ha_master_address!r}")
        if not 0 <= self.access_message_in_memory_max_ratio <= 100:
            raise ValueError("accessMessageInMemoryMaxRatio must be a percentage (0..100)")
        if self.slave_sync_interval < 100 or self.ha_lag_time_max_ms < 1:
            raise ValueError("slaveSyncInterval must be at least 100 ms and haLagTimeMaxMs positive")

    def update(self, values: dict[str, str]) -> None:
        """Apply RocketMQ-named keys (camelCase) from a properties file or flags."""
        by_key = {_camel(f.name): f for f in fields(self) if f.name != "extra"}
        for key, raw in values.items():
            f = by_key.get(key)
            if f is None:
                log.info("broker config key %s is not used here (kept, ignored)", key)
                self.extra[key] = raw
                continue
            setattr(self, f.name, _convert(raw, getattr(self, f.name), key))
        self.validate()

    @classmethod
    def load(cls, path: str | None = None, overrides: dict[str, str] | None = None) -> BrokerConfig:
        cfg = cls()
        values: dict[str, str] = {}
        if path:
            with open(path, encoding="utf-8") as f:
                values.update(parse_properties(f.read()))
        values.update(overrides or {})
        cfg.update(values)
        return cfg


def _is_host_port(addr: str) -> bool:
    host, sep, port = addr.rpartition(":")
    return bool(sep and host and port.isdigit() and 0 < int(port) <= 65535)


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    name = head + "".join(p.capitalize() for p in rest)
    return {"brokerIp1": "brokerIP1"}.get(name, name)


def _convert(raw: str, current: Any, key: str) -> Any:
    if isinstance(current, bool):
        if raw.lower() not in ("true", "false"):
            raise ValueError(f"{key} must be true or false, not {raw!r}")
        return raw.lower() == "true"
    if isinstance(current, int):
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"{key} must be an integer, not {raw!r}") from None
    return raw


_CONTINUATION = re.compile(r"(?<!\\)(\\\\)*\\$")


def parse_properties(text: str) -> dict[str, str]:
    """Java ``.properties``: ``key=value`` / ``key: value`` / ``key value``, ``#``/``!``
    comments, backslash line continuations and the usual escapes."""
    out: dict[str, str] = {}
    logical = ""
    for line in text.splitlines():
        stripped = line.lstrip()
        if not logical and (not stripped or stripped[0] in "#!"):
            continue
        if _CONTINUATION.search(stripped):
            logical += stripped[:-1]
            continue
        logical += stripped
        key, value = _split_pair(logical)
        out[key] = value
        logical = ""
    if logical:
        key, value = _split_pair(logical)
        out[key] = value
    return out


def _split_pair(line: str) -> tuple[str, str]:
    i = 0
    key = []
    while i < len(line):
        ch = line[i]
        if ch == "\\" and i + 1 < len(line):
            key.append(_unescape(line[i + 1]))
            i += 2
            continue
        if ch in "=: \t":
            break
        key.append(ch)
        i += 1
    rest = line[i:].lstrip(" \t")
    if rest[:1] in ("=", ":"):
        rest = rest[1:].lstrip(" \t")
    return "".join(key), _unescape_all(rest)


def _unescape(ch: str) -> str:
    return {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}.get(ch, ch)


def _unescape_all(text: str) -> str:
    out = []
    i = 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            if text[i + 1] == "u" and i + 6 <= len(text):
                out.append(chr(int(text[i + 2 : i + 6], 16)))
                i += 6
                continue
            out.append(_unescape(text[i + 1]))
            i += 2
            continue
        out.append(text[i])
        i += 1
    return "".join(out)


def config_from_env(cfg: BrokerConfig) -> None:
    """``NAMESRV_ADDR`` as RocketMQ's scripts use it (only when the file left it empty)."""
    if not cfg.namesrv_addr and os.environ.get("NAMESRV_ADDR"):
        cfg.namesrv_addr = os.environ["NAMESRV_ADDR"]
