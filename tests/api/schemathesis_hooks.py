"""Schemathesis hooks (tests/contracts.rs sets SCHEMATHESIS_HOOKS to this file).

`positive_data_acceptance` on `POST /orders`: a body valid by the OpenAPI description must be
accepted. Some rules no static description carries: they depend on the instrument table
(`data/instruments.toml`: listed symbols, tick, lot, maximum price and quantity) or tie fields
together (a limit order has a price and a market order none; post-only is for GTC limit orders; a
client order id in the body and in the `Idempotency-Key` header must agree; `id` and a client
order id exclude each other) — each documented on the operation and refused with its own reason
code. Before each positive-mode call this hook moves the generated body onto those rules, keeping
everything else schemathesis chose (field presence, types, number or string decimals, nulls, the
time in force, extra client ids…), so the check asks: is every order the description allows, once
it fits the instrument table, accepted? Negative-mode cases are left alone.
"""

from decimal import Decimal
from pathlib import Path
import tomllib
import zlib

import schemathesis

ROOT = Path(__file__).resolve().parents[2]
INSTRUMENTS = tomllib.loads((ROOT / "data" / "instruments.toml").read_text())["instrument"]


def _on_grid(value, step: Decimal, low: Decimal, high: Decimal) -> Decimal:
    """A point of [low, high] on multiples of `step`, chosen by the generated `value` (a CRC of
    its text: deterministic, and any value — 1e300, NaN, a string — maps somewhere)."""
    span = int((high - low) / step)
    return low + (zlib.crc32(repr(value).encode()) % (span + 1)) * step


def _as_generated(original, d: Decimal):
    """`d` in the representation schemathesis chose: a JSON number or a decimal string."""
    if isinstance(original, str):
        return str(d)
    return int(d) if d == d.to_integral_value() else float(d)


@schemathesis.hook
def before_call(context, case, kwargs):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return
    if case.operation.method.upper() != "POST" or case.operation.path != "/orders":
        return
    body = case.body
    if not isinstance(body, dict):
        return
    spec = INSTRUMENTS[zlib.crc32(repr(sorted(body.items(), key=repr)).encode()) % len(INSTRUMENTS)]
    body["instrument"] = spec["symbol"]
    tick, lot = Decimal(spec["tick_size"]), Decimal(spec["lot_size"])
    body["quantity"] = _as_generated(
        body.get("quantity"),
        _on_grid(body.get("quantity"), lot, lot, min(Decimal(spec["max_quantity"]), lot * 1000)),
    )
    market = body.get("order_type") == "MARKET"
    if body.get("post_only"):
        # Post-only rests or is refused: a GTC limit order, priced far from the market so it
        # never crosses (a cross is refused by the engine later, not by the API).
        body["order_type"] = "LIMIT"
        body["time_in_force"] = "GTC"
        market = False
    if market:
        body["price"] = None
    else:
        price = body.get("price")
        body["price"] = _as_generated(
            price, _on_grid(price, tick, tick, min(Decimal(spec["max_price"]), tick * 100000))
        )
    header = {k.lower(): v for k, v in (case.headers or {}).items()}.get("idempotency-key")
    if header is not None and body.get("client_order_id") is not None:
        body["client_order_id"] = header
    if body.get("client_order_id") is not None or header is not None:
        body.pop("id", None)
    case.body = body
