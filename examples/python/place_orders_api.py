#!/usr/bin/env python3
"""Trade on Kappa Exchange through its HTTP API with a trader's API key (standard library only).

The server routes each order to its instrument's `orders` partition (shown by GET /instruments),
runs the match maker's checks first (a refusal is a 400 with the engine's reason, never published)
and answers 202 once the broker has the order; its fate then appears at GET /orders/{id}. Retrying
with the same Idempotency-Key never creates a second order. Prices and quantities are decimals:
read them with `parse_float=Decimal`, and send them as JSON numbers with the exact text or, as
here, as strings ("15.05").

    python3 examples/python/place_orders_api.py --url http://127.0.0.1:8080 --api-key kx_...

What it does, printing one JSON line at the end:
  1. GET /me (whose key is this) and GET /instruments (tick, lot, best bid/ask, partition);
  2. a limit buy resting 10 ticks under the best bid, sent twice with one Idempotency-Key (the
     retry gets the same id and publishes nothing), followed until the book has it (NEW);
  3. cancels it and follows it to CANCELLED;
  4. an IOC buy at the best ask (takes liquidity when there is some): FILLED, or CANCELLED with
     the unfilled rest;
  5. an order off the instrument's tick: refused 400 `price_off_tick`, never published.
"""

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from decimal import Decimal

FINAL = {"FILLED", "CANCELLED", "REJECTED"}


class Api:
    def __init__(self, url, key):
        self.url = url.rstrip("/")
        self.key = key

    def call(self, method, path, body=None, headers=None):
        """(status, JSON answer); every answer of the API, error or not, is JSON."""
        data = None if body is None else json.dumps(body, default=_decimal).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.key}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read(), parse_float=Decimal)
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read(), parse_float=Decimal)

    def until(self, order_id, done, timeout=30):
        """Polls GET /orders/{id} until `done(status)`; returns the last answer."""
        deadline = time.monotonic() + timeout
        while True:
            status, order = self.call("GET", f"/orders/{order_id}")
            if status == 200 and done(order["status"]):
                return order
            if time.monotonic() > deadline:
                sys.exit(f"order {order_id}: still {status} {order} after {timeout} s")
            time.sleep(0.1)


def _decimal(value):
    """Decimals go out as JSON strings with their exact text ("15.05"), which the API accepts
    wherever it takes a number: Python's json would write a float's binary approximation."""
    if isinstance(value, Decimal):
        return format(value, "f")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def on_tick(price, tick):
    return (price / tick).to_integral_value() * tick


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--api-key", default=os.environ.get("KAPPA_API_KEY"))
    ap.add_argument("--instrument", help="symbol (default: the most traded)")
    ap.add_argument("--wait", type=float, default=30, help="seconds to wait for a two-sided book")
    args = ap.parse_args()
    if not args.api_key:
        sys.exit("--api-key (or KAPPA_API_KEY) is required")
    api = Api(args.url, args.api_key)

    status, me = api.call("GET", "/me")
    if status != 200:
        sys.exit(f"the key is refused: {status} {me}")
    deadline = time.monotonic() + args.wait
    while True:
        _, instruments = api.call("GET", "/instruments")
        traded = [i for i in instruments
                  if i["best_bid"] is not None and i["best_ask"] is not None
                  and (args.instrument is None or i["symbol"] == args.instrument)]
        if traded:
            break
        if time.monotonic() > deadline:
            sys.exit(f"no two-sided book after {args.wait} s")
        time.sleep(0.2)
    inst = max(traded, key=lambda i: i["trades"])
    tick, lot = inst["tick_size"], inst["lot_size"]
    out = {"trader": me["trader"], "instrument": inst["symbol"], "partition": inst["partition"]}

    # 2. A resting buy, sent twice with one idempotency key.
    rest = {"instrument": inst["symbol"], "trxn_type": "BUY", "quantity": lot,
            "price": on_tick(inst["best_bid"] - 10 * tick, tick)}
    key = f"py-{uuid.uuid4().hex[:16]}"
    first = api.call("POST", "/orders", rest, {"Idempotency-Key": key})
    retry = api.call("POST", "/orders", rest, {"Idempotency-Key": key})
    if first[0] != 202:
        sys.exit(f"the resting order was refused: {first}")
    order_id = first[1]["id"]
    resting = api.until(order_id, lambda s: s in ("NEW", "PARTIALLY_FILLED") or s in FINAL)
    out["resting"] = {"id": order_id, "status": resting["status"],
                      "retry_same_id": retry[1].get("id") == order_id,
                      "retry_duplicate": bool(retry[1].get("duplicate_request"))}

    # 3. Cancel it.
    cancel = api.call("POST", f"/orders/{order_id}/cancel")
    cancelled = api.until(order_id, lambda s: s in FINAL)
    out["cancel"] = {"status": cancel[0], "final": cancelled["status"]}

    # 4. An IOC buy at the best ask.
    _, book = api.call("GET", f"/book/{inst['symbol']}")
    ask = book["asks"][0]["price"] if book["asks"] else inst["best_ask"]
    status, ioc = api.call("POST", "/orders", {"instrument": inst["symbol"], "trxn_type": "BUY",
                                               "quantity": lot, "price": ask,
                                               "time_in_force": "IOC"})
    if status != 202:
        sys.exit(f"the IOC order was refused: {status} {ioc}")
    done = api.until(ioc["id"], lambda s: s in FINAL)
    out["ioc"] = {"id": ioc["id"], "status": done["status"], "filled": str(done.get("filled"))}

    # 5. Off tick: refused before publication.
    status, err = api.call("POST", "/orders", {"instrument": inst["symbol"], "trxn_type": "BUY",
                                               "quantity": lot, "price": rest["price"] + tick / 3})
    out["off_tick"] = {"status": status, "error": err.get("error")}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
