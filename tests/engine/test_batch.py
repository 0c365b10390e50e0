from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logstore import batch as rb
from logstore.batch import BatchOptions, Record, build_batch
from logstore.errors import BatchTooLargeError, InvalidBatchError

records = st.lists(
    st.builds(
        Record,
        value=st.one_of(st.none(), st.binary(max_size=300)),
        key=st.one_of(st.none(), st.binary(max_size=20)),
        headers=st.lists(st.tuples(st.text(max_size=8), st.binary(max_size=8)), max_size=3).map(tuple),
        timestamp_ms=st.integers(0, 2**40),
    ),
    min_size=1,
    max_size=20,
)


@given(records, st.sampled_from([rb.CODEC_NONE, rb.CODEC_ZSTD]))
def test_round_trip(recs: list[Record], codec: int) -> None:
    buf = build_batch(recs, BatchOptions(compression=codec))
    h = rb.validate(buf)
    assert h.record_count == len(recs) and h.codec == codec and h.total_bytes == len(buf)
    assert h.max_timestamp_ms == max(r.timestamp_ms for r in recs)
    got = list(rb.iter_records(buf))
    assert [(r.value, r.key, r.headers, r.timestamp_ms) for r in got] == [
        (r.value, r.key, r.headers, r.timestamp_ms) for r in recs
    ]
    assert [r.offset for r in got] == list(range(len(recs)))


def test_every_flipped_byte_inside_the_crc_is_caught() -> None:
    buf = build_batch([Record(b"hello", b"k", (("h", b"v"),), 5)])
    for pos in range(rb.CRC_OFFSET, len(buf)):
        bad = bytearray(buf)
        bad[pos] ^= 0x01
        with pytest.raises(InvalidBatchError):
            rb.validate(bad)


def test_stamp_is_outside_the_crc() -> None:
    buf = build_batch([Record(b"x")])
    rb.stamp(buf, 12345, 7)
    h = rb.validate(buf)
    assert (h.base_offset, h.leader_epoch) == (12345, 7)
    assert [r.offset for r in rb.iter_records(buf)] == [12345]


def test_bad_inputs_are_clear_errors() -> None:
    with pytest.raises(InvalidBatchError, match="at least one record"):
        build_batch([])
    with pytest.raises(InvalidBatchError, match="shorter than a batch header"):
        rb.validate(b"\x00" * 10)
    buf = build_batch([Record(b"x" * 1000)])
    with pytest.raises(BatchTooLargeError):
        rb.validate(buf, limit=100)
    bad = bytearray(buf)
    bad[8:12] = (10**6).to_bytes(4, "big")
    with pytest.raises(InvalidBatchError, match="runs past the end"):
        rb.validate(bad)


def test_zstd_bomb_is_refused() -> None:
    import zstandard

    payload = zstandard.ZstdCompressor().compress(b"\x00" * (rb.RECORDS_BYTES_LIMIT + 1))
    buf = build_batch([Record(b"x")], BatchOptions(compression=rb.CODEC_ZSTD))
    forged = bytearray(buf[: rb.HEADER_BYTES]) + payload
    rb.HEADER.pack_into(forged, 0, 0, len(forged) - 12, 0, 2, 0, rb.CODEC_ZSTD, 0, 0, 0, -1, -1, -1, 1)
    import struct

    import crc32c

    struct.pack_into(">I", forged, rb.CRC_OFFSET, crc32c.crc32c(bytes(forged[rb.CRC_COVERS_FROM :])))
    rb.validate(forged)
    with pytest.raises(InvalidBatchError, match="decompress past"):
        list(rb.iter_records(forged))


def test_opaque_batches_are_checked_but_not_decoded() -> None:
    buf = rb.build_opaque_batch(b"three-messages-in-a-foreign-framing", 3, 10, 12)
    rb.stamp(buf, 7, 0)
    h = rb.validate(buf)
    assert (h.record_count, h.last_offset, h.max_timestamp_ms) == (3, 9, 12)
    assert bytes(rb.payload_view(buf)) == b"three-messages-in-a-foreign-framing"
    with pytest.raises(InvalidBatchError, match="opaque"):
        list(rb.iter_records(buf))
    bad = bytearray(buf)
    bad[-1] ^= 1
    with pytest.raises(InvalidBatchError, match="CRC"):
        rb.validate(bad)
