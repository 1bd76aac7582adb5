"""A fix-gateway journal (src/fix/store.rs) holding one snapshot of a synthetic state at chosen
sizes, to measure what the gateway's state costs in memory with the real binary.

The journal is a sequence of batches `length (u32 LE) ‖ CRC-32 (u32 LE) ‖ bincode(Vec<Record>)`;
here one batch with one `Record::Snapshot(State)`. bincode 1's default encoding (`bincode::
serialize`): integers fixed-width little-endian, strings and sequences and maps a u64 length
then the items, `Option` a u8 tag, `bool` a u8, `char` its UTF-8 bytes, enum variants a u32
index, structs and tuples their fields in order; `rust_decimal` with `serde-str` a string. The
field order is that of the structs of src/fix/state.rs: when they change, the gateway stops
reading this journal at the first batch (it logs `sessions=0`), and test_fix_gateway.py says so.

The state is a worst case per entry: 64-character ClOrdIDs (the longest the gateway accepts),
kept messages that are fill ExecutionReports of 17 fields, open orders not yet acknowledged by
the broker (their `orders` record in the outbox)."""

import struct
import zlib
from pathlib import Path

ORDER_PAYLOAD = (
    b'{"id":1000000000000000001,"instrument":"AAPL","trxn_type":"BUY","quantity":1000,'
    b'"price":187.25,"order_timestamp":"2025-11-26T21:30:00.123Z","trader":"T0001",'
    b'"order_type":"LIMIT","time_in_force":"GTC"}'
)
TIME = "20251126-21:30:00.123"


def _u8(v):
    return struct.pack("<B", v)


def _u32(v):
    return struct.pack("<I", v)


def _u64(v):
    return struct.pack("<Q", v)


def _str(v: str) -> bytes:
    b = v.encode()
    return _u64(len(b)) + b


def _none():
    return _u8(0)


def _some(b: bytes) -> bytes:
    return _u8(1) + b


def cl_ord_id(session: str, n: int) -> str:
    """A 64-character ClOrdID, unique per session."""
    head = f"{session}-{n:012d}-"
    return head + "x" * (64 - len(head))


def _kept_message(session: str, n: int) -> bytes:
    """`Stored`: a fill ExecutionReport (35=8) as the gateway keeps it for resends."""
    order_id = str(10**18 + n)
    body = [
        (37, order_id), (11, cl_ord_id(session, n)), (17, f"{order_id}-3"), (150, "F"), (39, "1"),
        (55, "AAPL"), (54, "1"), (40, "2"), (59, "1"), (38, "1000"), (44, "187.25"), (32, "100"),
        (31, "187.25"), (151, "800"), (14, "200"), (6, "187.25"), (60, TIME),
    ]  # fmt: skip
    fields = _u64(len(body)) + b"".join(_u32(tag) + _str(value) for tag, value in body)
    return _u64(n + 1) + _str(TIME) + _str("8") + fields


def _session(name: str, kept: int, cl_ord_ids: int) -> bytes:
    """`SessionData`: next_in, next_out, sent (VecDeque<Stored>), cl_ord_ids (BTreeMap), epoch."""
    out = bytearray(_u64(kept + 1) + _u64(kept + 1))
    out += _u64(kept)
    for n in range(kept):
        out += _kept_message(name, n)
    out += _u64(cl_ord_ids)
    for n in sorted(range(cl_ord_ids), key=lambda n: cl_ord_id(name, n)):
        # ClOrdRef { order_id, final_status: None } (the order is open).
        out += _str(cl_ord_id(name, n)) + _u64(10**18 + n) + _none()
    out += _u32(0)  # epoch
    return bytes(out)


def _open_order(session: str, n: int) -> bytes:
    """`OrderData`: a limit order, partly filled, its `orders` record not yet acknowledged."""
    cl = cl_ord_id(session, n)
    return (
        _str(session) + _str("AAPL") + b"1" + b"2" + b"1"  # side, ord_type, tif
        + _str("1000") + _some(_str("187.25"))  # order_qty, price
        + _str(cl) + _none() + _none()  # cl_ord_id, orig_cl_ord_id, pending
        + _u64(1) + _str(cl)  # cl_ord_ids
        + _str("200") + _str("800") + _str("37450")  # cum_qty, leaves_qty, notional
        + b"1" + _u32(2)  # status, execs
        # outbox: one Publication { seq, partition, scan_from, key, payload }, not acknowledged
        + _u64(1) + _u32(0) + struct.pack("<i", 0) + struct.pack("<q", 0)
        + _str("AAPL") + _u64(len(ORDER_PAYLOAD)) + ORDER_PAYLOAD
        + _u32(1)  # publications
    )  # fmt: skip


def write(folder: Path, sessions: int, kept: int, cl_ord_ids: int, open_orders: int) -> int:
    """Writes `folder`/journal: `sessions` sessions, each with `kept` kept messages, `cl_ord_ids`
    ClOrdIDs and `open_orders` open orders. Returns the journal's size in bytes."""
    names = [f"T{i:04d}" for i in range(sessions)]
    state = bytearray(_u64(sessions))
    for name in names:
        state += _str(name) + _session(name, kept, cl_ord_ids)
    state += _u64(sessions * open_orders)
    order_id = 0
    for name in names:
        for n in range(open_orders):
            state += _u64(10**18 + order_id) + _open_order(name, n)
            order_id += 1
    state += _u64(1) + struct.pack("<i", 0) + struct.pack("<q", 0)  # cursor: partition 0 at 0
    batch = _u64(1) + _u32(0) + bytes(state)  # Vec<Record> [Record::Snapshot(state)]
    frame = _u32(len(batch)) + _u32(zlib.crc32(batch)) + batch
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "journal").write_bytes(frame)
    return len(frame)
