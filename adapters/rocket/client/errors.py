"""Exceptions the client raises on purpose.

RocketMQ's Java client has two: ``MQClientException`` (the client refused or could not do the
thing) and ``MQBrokerException`` (the broker answered with an error code). We keep the same
split; ``retriable`` says whether the producer may try the send again on another queue.
"""

from __future__ import annotations

from ..remoting.codes import ResponseCode

# Broker answers after which a send is retried on another queue (RocketMQ's retryResponseCodes).
RETRIABLE_BROKER_CODES = frozenset({
    ResponseCode.TOPIC_NOT_EXIST,
    ResponseCode.SERVICE_NOT_AVAILABLE,
    ResponseCode.SYSTEM_ERROR,
    ResponseCode.SYSTEM_BUSY,
    ResponseCode.NO_PERMISSION,
    ResponseCode.NOT_LEADER_FOR_QUEUE,
    ResponseCode.GO_AWAY,
})


class MQClientError(Exception):
    """The client could not do what was asked (bad argument, no route, not started, ...)."""

    retriable = False


class MQBrokerError(MQClientError):
    """The broker answered with an error code; ``code`` and ``remark`` are the broker's."""

    def __init__(self, code: int, remark: str | None, broker_addr: str | None = None) -> None:
        name = ResponseCode(code).name if code in ResponseCode._value2member_map_ else str(code)
        super().__init__(f"broker {broker_addr or '?'} answered {name}: {remark or ''}".rstrip())
        self.code = code
        self.remark = remark
        self.broker_addr = broker_addr

    @property
    def retriable(self) -> bool:  # type: ignore[override]
        return self.code in RETRIABLE_BROKER_CODES


class NoRouteError(MQClientError):
    """The name server knows no route for the topic (it does not exist, or no broker serves it)."""

    retriable = True


class MessageIllegalError(MQClientError):
    """The message breaks a client-side rule (empty body, too big, bad topic) and was not sent."""
