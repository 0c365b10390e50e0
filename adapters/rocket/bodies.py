"""JSON bodies of RocketMQ admin requests that Java's fastjson writes in a non-standard shape.

ConsumeStats (GET_CONSUME_STATS): its ``offsetTable`` is a map keyed by MessageQueue *objects*,
which fastjson writes as ``{{"brokerName":"b","queueId":0,"topic":"T"}:{"brokerOffset":..}}``:
not standard JSON, but what RocketMQ's tools read, so the broker writes it that way and
:func:`decode_consume_stats` reads it back.
"""

from __future__ import annotations

import re
from typing import Any

import orjson


def encode_consume_stats(entries: list[tuple[dict[str, Any], dict[str, Any]]], diff_total: int) -> bytes:
    table = ",".join(
        orjson.dumps(dict(sorted(mq.items()))).decode() + ":" + orjson.dumps(w).decode() for mq, w in entries
    )
    return f'{{"consumeTps":0.0,"offsetTable":{{{table}}},"totalDiff":{diff_total}}}'.encode()


_OBJECT_KEY = re.compile(r'(\{|,)(\{[^{}]*\}):')


def decode_consume_stats(body: bytes) -> dict[str, Any]:
    """Parse a ConsumeStats body: ``offsetTable`` becomes a list of (MessageQueue, OffsetWrapper)."""
    text = body.decode()
    keys: list[dict[str, Any]] = []

    def stash(m: re.Match[str]) -> str:
        keys.append(orjson.loads(m.group(2)))
        return f'{m.group(1)}"#{len(keys) - 1}":'

    obj = orjson.loads(_OBJECT_KEY.sub(stash, text))
    table = obj.get("offsetTable") or {}
    obj["offsetTable"] = [(keys[int(k[1:])], v) for k, v in table.items()]
    return dict(obj)


def encode_mq_table(field: str, entries: list[tuple[dict[str, Any], Any]], extra: dict[str, Any] | None = None) -> bytes:
    """A body ``{"<field>": {<MessageQueue>: value, ...}, ...extra}`` in fastjson's object-keyed
    shape: TopicStatsTable (GET_TOPIC_STATS_INFO, values TopicOffset) and ResetOffsetBody
    (INVOKE_BROKER_TO_RESET_OFFSET, values offsets)."""
    table = ",".join(
        orjson.dumps(dict(sorted(mq.items()))).decode() + ":" + orjson.dumps(v).decode() for mq, v in entries
    )
    rest = "".join(f",{orjson.dumps(k).decode()}:{orjson.dumps(v).decode()}" for k, v in (extra or {}).items())
    return f'{{"{field}":{{{table}}}{rest}}}'.encode()


def decode_mq_table(body: bytes, field: str) -> dict[str, Any]:
    """Parse an object-keyed body: ``field`` becomes a list of (MessageQueue dict, value)."""
    text = body.decode()
    keys: list[dict[str, Any]] = []

    def stash(m: re.Match[str]) -> str:
        keys.append(orjson.loads(m.group(2)))
        return f'{m.group(1)}"#{len(keys) - 1}":'

    obj = orjson.loads(_OBJECT_KEY.sub(stash, text))
    table = obj.get(field) or {}
    obj[field] = [(keys[int(k[1:])], v) for k, v in table.items()]
    return dict(obj)
