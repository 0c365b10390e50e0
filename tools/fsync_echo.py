"""The least a one-at-a-time SYNC_FLUSH send can cost on this machine: a process that takes
1 KiB requests over one loopback TCP connection and answers each with 8 bytes only after an
``os.write`` of it and an ``os.fdatasync`` of its file. Blocking sockets, no framing, no event
loop: what is left is the round trip between two processes, their wake-ups and the fsync.

    python -m tools.fsync_echo FILE      (prints ``PORT <n>``, serves one connection, exits)

``logstore bench rocket`` measures ``sync1floor`` against it (``fsync_echo_rate``), beside the
raw fsync loop and the broker's ``sync1``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

REQUEST_BYTES = 1024
ANSWER = b"stored!\n"


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    parts = []
    while n:
        chunk = sock.recv(n)
        if not chunk:
            return b""
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def serve(path: Path) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    print(f"PORT {listener.getsockname()[1]}", flush=True)
    conn, _ = listener.accept()
    listener.close()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        while request := _recv_exactly(conn, REQUEST_BYTES):
            os.write(fd, request)
            os.fdatasync(fd)
            conn.sendall(ANSWER)
    finally:
        os.close(fd)
        conn.close()


def fsync_echo_rate(directory: Path, seconds: float) -> tuple[float, list[float]]:
    """One request at a time to a ``serve`` process for ``seconds``: (requests/s, latencies)."""
    path = directory / "baseline-fsync-echo.tmp"
    with subprocess.Popen([sys.executable, "-m", "tools.fsync_echo", str(path)], stdout=subprocess.PIPE, text=True,
                          cwd=Path(__file__).resolve().parent.parent) as proc:
        try:
            assert proc.stdout is not None
            port = int(proc.stdout.readline().split()[1])
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                request = os.urandom(REQUEST_BYTES)
                lat: list[float] = []
                perf = time.perf_counter
                start = perf()
                end = start + seconds
                while (t0 := perf()) < end:
                    sock.sendall(request)
                    if _recv_exactly(sock, len(ANSWER)) != ANSWER:
                        raise RuntimeError("the fsync echo server stopped answering")
                    lat.append(perf() - t0)
                elapsed = perf() - start
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
            path.unlink(missing_ok=True)
    return len(lat) / elapsed, lat


def main() -> int:
    serve(Path(sys.argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
