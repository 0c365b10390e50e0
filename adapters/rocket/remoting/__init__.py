"""RocketMQ v4 remoting protocol: frames, commands, an asyncio server and client."""

from .client import RemotingClient, split_addr
from .codes import (
    FLAG_ONEWAY,
    FLAG_RESPONSE,
    PROMOTE_SLAVE,
    LanguageCode,
    RequestCode,
    ResponseCode,
    SerializeType,
)
from .command import (
    FRAME_BYTES_MAX,
    RemotingCommand,
    decode_frame,
    decode_properties,
    encode_frame,
    encode_properties,
)
from .connection import LATER, Connection, GroupHandler, GroupNow, Handler, Later
from .errors import (
    FrameError,
    HeaderError,
    RemotingClosedError,
    RemotingConnectError,
    RemotingError,
    RemotingTimeoutError,
    RemotingTooManyRequestsError,
)
from .server import RemotingServer

__all__ = [
    "FLAG_ONEWAY",
    "FLAG_RESPONSE",
    "FRAME_BYTES_MAX",
    "LATER",
    "PROMOTE_SLAVE",
    "Connection",
    "FrameError",
    "GroupHandler",
    "GroupNow",
    "Handler",
    "HeaderError",
    "LanguageCode",
    "Later",
    "RemotingClient",
    "RemotingClosedError",
    "RemotingCommand",
    "RemotingConnectError",
    "RemotingError",
    "RemotingServer",
    "RemotingTimeoutError",
    "RemotingTooManyRequestsError",
    "RequestCode",
    "ResponseCode",
    "SerializeType",
    "decode_frame",
    "decode_properties",
    "encode_frame",
    "encode_properties",
    "split_addr",
]
