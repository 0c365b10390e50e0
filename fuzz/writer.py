"""The writer process of the real-process kill test (``fuzz.realproc``).

``python -m fuzz.writer STORE_DIR GENERATION``: opens the store on RealIO, appends to the
sync log ``w`` forever (four appends in flight, so group commit batches them) and prints
``ACK <base offset> <generation> <index>`` after each acknowledgement. The record for
(generation, index) is :func:`record_for`, so the parent can check bytes without a copy.
"""

from __future__ import annotations

import asyncio
import sys

from logstore import LogConfig, Record, Store, build_batch

LOG = "w"
CONFIG = LogConfig(flush="sync", segment_bytes=64 * 1024, index_interval_bytes=1024)


def record_for(generation: int, index: int) -> Record:
    body = f"g{generation}-i{index}-".encode()
    return Record(body * (1 + index % 40), key=b"k%d" % index, headers=(("g", b"%d" % generation),),
                  timestamp_ms=1_700_000_000_000 + index)


async def main(root: str, generation: int) -> None:
    store = await Store.open(root)
    log = await store.get_or_create_log(LOG, CONFIG)
    index = 0

    async def one(i: int) -> None:
        result = await log.append(build_batch([record_for(generation, i)]))
        sys.stdout.write(f"ACK {result.base_offset} {generation} {i}\n")
        sys.stdout.flush()

    sys.stdout.write("READY\n")
    sys.stdout.flush()
    while True:
        await asyncio.gather(*(one(index + k) for k in range(4)))
        index += 4


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
