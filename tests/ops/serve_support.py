"""A real ``logstore serve`` subprocess for the ops tests (free 127.0.0.1 ports, a tmp data
dir): the shared test tool in adapters.rocket.testing."""

from __future__ import annotations

from adapters.rocket.testing import ServeProcess, write_conf

__all__ = ["ServeProcess", "write_conf"]
