"""Messages the broker writes itself (RocketMQ's MessageExtBrokerInner puts): scheduled messages
delivered to their real topic, retries and dead letters, rolled timer messages.

Each keeps what its producer set (body, flag, properties, born time and host, sys flag,
reconsume times) and gets a new queue offset, commit log offset and store time. Several
messages for one queue go in one batch (up to ``BATCH_MESSAGES_MAX`` messages and half the
log's batch limit). As in the send path, offsets are read from ``log.assigned_offset`` right
before ``log.append`` with no await in between.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from adapters.rocket.message import (
    SYSFLAG_BORNHOST_V6,
    SYSFLAG_STOREHOST_V6,
    Message,
    MessageFormatError,
    encode_host,
    encode_stored_raw,
)
from adapters.rocket.remoting.command import encode_properties
from logstore import Log
from logstore.batch import build_opaque_batch

from .keyindex import index_keys
from .queues import encode_commitlog_offset

if TYPE_CHECKING:
    from .broker import Broker

BATCH_MESSAGES_MAX = 1024
_FALLBACK_HOST = b"\x7f\x00\x00\x01\x00\x00\x00\x00"


@dataclass
class InnerMessage:
    """A message to store as it is, in ``topic`` / ``queue_id``."""

    topic: str
    queue_id: int
    body: bytes
    properties: dict[str, str] = field(default_factory=dict)
    flag: int = 0
    sys_flag: int = 0
    born_timestamp: int = 0
    born_host: str = "127.0.0.1:0"
    reconsume_times: int = 0

    @classmethod
    def copy_of(cls, msg: Message, topic: str, queue_id: int) -> InnerMessage:
        return cls(topic, queue_id, msg.body, dict(msg.properties), msg.flag, msg.sys_flag,
                   msg.born_timestamp, msg.born_host, msg.reconsume_times)


@dataclass
class Appended:
    log: Log
    base_offset: int
    commitlog_offsets: list[int]


def _records(broker: Broker, topic: str, queue_id: int, msgs: list[InnerMessage], log_id: int, base: int,
             store_ts: int) -> tuple[list[bytes], list[tuple[list[str], int]]]:
    send = broker.send
    topic_bytes = topic.encode()
    records = []
    keys = []
    for i, m in enumerate(msgs):
        try:
            born_host, born_v6 = encode_host(m.born_host)
        except (MessageFormatError, ValueError):
            born_host, born_v6 = _FALLBACK_HOST, False
        sys_flag = ((m.sys_flag & ~(SYSFLAG_BORNHOST_V6 | SYSFLAG_STOREHOST_V6))
                    | (SYSFLAG_BORNHOST_V6 if born_v6 else 0) | send.store_host_flag)
        phys = encode_commitlog_offset(log_id, base + i)
        records.append(encode_stored_raw(
            topic_bytes, m.body, encode_properties(m.properties).encode(), queue_id=queue_id, flag=m.flag,
            queue_offset=base + i, commitlog_offset=phys, sys_flag=sys_flag, born_timestamp=m.born_timestamp,
            born_host=born_host, store_timestamp=store_ts, store_host=send.store_host,
            reconsume_times=m.reconsume_times,
        ))
        keys.append((index_keys(topic, m.properties), phys))
    return records, keys


async def append_inner(broker: Broker, topic: str, queue_id: int, msgs: list[InnerMessage]) -> list[Appended]:
    """Store ``msgs`` in ``topic`` / ``queue_id`` (their own topic and queue fields are not
    used) in as few batches as fit. Returns when
    every batch is acknowledged under the log's flush policy (and, on a SYNC_MASTER, the slaves
    have it or syncFlushTimeout passed); raises LogFailedError,
    MessageFormatError or InvalidBatchError (then a prefix of the batches may be stored)."""
    qlog, log_id = await broker.queues.get_or_create(topic, queue_id)
    bytes_max = qlog.config.batch_bytes_max // 2
    out = []
    i = 0
    while i < len(msgs):
        chunk = msgs[i : i + BATCH_MESSAGES_MAX]
        store_ts = broker.store.clock.now_ms()
        base = qlog.assigned_offset
        records, keys = _records(broker, topic, queue_id, chunk, log_id, base, store_ts)
        size = 0
        for n, rec in enumerate(records):
            size += len(rec)
            if size > bytes_max and n > 0:
                records, keys = records[:n], keys[:n]
                break
        data = build_opaque_batch(b"".join(records), len(records), store_ts, store_ts)
        flat: list[str] = []
        offsets: list[int] = []
        for k, phys in keys:
            flat += k
            offsets += [phys] * len(k)
        broker.key_index.add_many(flat, offsets, store_ts)  # one call for the batch's keys
        broker.key_index.mark(log_id, base + len(records))
        # No await between reading assigned_offset and append's synchronous prefix.
        await qlog.append(data)
        out.append(Appended(qlog, base, [phys for _k, phys in keys]))
        i += len(records)
    if out:
        await broker.ha.wait_slaves_inner(qlog.name, out[-1].base_offset + len(out[-1].commitlog_offsets))
    return out
