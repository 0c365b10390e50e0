"""Exceptions of the remoting layer.

Two kinds: malformed input (``FrameError``, ``HeaderError``), which says what was wrong with
the bytes, and transport failures on a live exchange (``RemotingConnectError``,
``RemotingTimeoutError``, ``RemotingClosedError``). ``retriable`` says whether sending the same
request again (perhaps on a new connection) can succeed.
"""

from __future__ import annotations


class RemotingError(Exception):
    """Base class of every error the remoting layer raises on purpose."""

    retriable = False


class FrameError(RemotingError):
    """The frame envelope is unusable: bad length, bad header length, unknown serialize type.

    The stream cannot be resynchronised after this, so a server closes the connection.
    """


class HeaderError(RemotingError):
    """The frame is well delimited but its header does not parse.

    ``opaque`` is the request id if it could still be recovered from the damaged header (so a
    server can answer with an error), else ``None`` (so it must close the connection).
    """

    def __init__(self, message: str, opaque: int | None = None, serialize_type: int = 0) -> None:
        super().__init__(message)
        self.opaque = opaque
        self.serialize_type = serialize_type


class RemotingConnectError(RemotingError):
    """Could not open a connection to the peer."""

    retriable = True


class RemotingTimeoutError(RemotingError):
    """The peer did not answer in time. The request may or may not have been processed."""

    retriable = True


class RemotingClosedError(RemotingError):
    """The connection closed while a request was waiting for its response."""

    retriable = True


class RemotingTooManyRequestsError(RemotingError):
    """Too many requests of ours are waiting on one connection; back off and retry."""

    retriable = True
