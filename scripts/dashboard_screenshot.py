#!/usr/bin/env python3
"""Screenshot of the live dashboard, signed in, for README.md (docs/dashboard.png).

Drives headless Chromium through chromedriver's W3C WebDriver HTTP API (standard library only):
opens the dashboard of a running `kappa demo`, signs in with the demo trader's key through the
order ticket (the key goes into the page's form, never into a URL), places a few orders — one
resting and cancelled with the orders table's button, one resting, market orders a couple of
seconds apart so the trader has trades and P&L points — waits for the orders table and the P&L
chart to show them, and saves a PNG of the window.

    cargo run -- demo --count 20000 --bind 127.0.0.1:18181     # prints the demo trader's API key
    python3 scripts/dashboard_screenshot.py --url http://127.0.0.1:18181/ --key kx_… \\
        --out docs/dashboard.png
"""

import argparse
import base64
import json
import os
import socket
import subprocess
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Driver:
    def __init__(self, base):
        self.base = base
        self.session = None

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("content-type", "application/json")
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.load(r)["value"]

    def script(self, js):
        return self.call("POST", f"/session/{self.session}/execute/sync", {"script": js, "args": []})


def wait_for(what, f, limit=60.0):
    deadline = time.time() + limit
    while True:
        v = f()
        if v:
            return v
        if time.time() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.25)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="the dashboard, e.g. http://127.0.0.1:18181/")
    ap.add_argument("--key", required=True, help="the demo trader's API key (printed by kappa demo)")
    ap.add_argument("--out", default="docs/dashboard.png")
    ap.add_argument("--instrument", default="INFY")
    # Headless Chromium's viewport is the window less ~143 px: 1400×1122 with the default.
    ap.add_argument("--size", default="1400,1265", help="window width,height")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    args = ap.parse_args()

    port = free_port()
    chromedriver = subprocess.Popen(
        [args.chromedriver, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        d = Driver(f"http://127.0.0.1:{port}")

        def ready():
            try:
                return d.call("GET", "/status")["ready"]
            except OSError:
                return False

        wait_for("chromedriver", ready, 20)
        options = {
            "binary": args.chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-dev-shm-usage", "--hide-scrollbars", f"--window-size={args.size}"],
        }
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": options}}}
        d.session = d.call("POST", "/session", caps)["sessionId"]
        try:
            shoot(d, args)
        finally:
            d.call("DELETE", f"/session/{d.session}")
    finally:
        chromedriver.terminate()
        chromedriver.wait()


def shoot(d, args):
    d.call("POST", f"/session/{d.session}/url", {"url": f"{args.url.rstrip('/')}/#{args.instrument}"})
    wait_for("the live page", lambda: d.script(
        "return document.querySelector('#status').textContent === 'live' && "
        "document.querySelectorAll('#book-bids tr.bid').length > 0 && "
        "document.querySelectorAll('#book-asks tr.ask').length > 0;"))
    book = d.script(
        "return {bid: Number(document.querySelector('#book-bids tr.bid').dataset.price), "
        "ask: Number([...document.querySelectorAll('#book-asks tr.ask')].pop().dataset.price)};")

    def ticket(order_type, side, price="", quantity="1"):
        before = d.script("return document.querySelector('#ticket-result').dataset.order || '';")
        d.script(
            "const k = document.querySelector('#api-key');"
            f"if (k.value !== {json.dumps(args.key)}) {{ k.value = {json.dumps(args.key)}; k.dispatchEvent(new Event('change')); }}"
            f"document.querySelector('#ticket [name=order_type]').value = {json.dumps(order_type)};"
            f"document.querySelector('#ticket [name=price]').value = {json.dumps(price)};"
            f"document.querySelector('#ticket [name=quantity]').value = {json.dumps(quantity)};"
            f"document.querySelector('#{side}').click(); return null;")
        return wait_for("the order's id", lambda: (lambda o: o if o and o != before else None)(
            d.script("return document.querySelector('#ticket-result').dataset.order || '';")), 30)

    # Resting far from the market: one cancelled from the orders table, one left open.
    cancelled = ticket("LIMIT", "buy", f"{int(book['bid'] * 0.95)}.00", "3")
    ticket("LIMIT", "sell", f"{int(book['ask'] * 1.05) + 1}.00", "2")
    wait_for("the cancel button", lambda: d.script(
        f"const b = document.querySelector('#orders button.cancel[data-order-id=\"{cancelled}\"]');"
        "if (b) b.click(); return !!b;"), 30)
    # Trades a few windows apart: P&L points.
    for side in ["buy", "sell", "buy", "sell"]:
        ticket("MARKET", side, "", "2")
        time.sleep(2.5)
    wait_for("the P&L chart", lambda: d.script(
        "return Number(document.querySelector('#pnl-chart').dataset.points || 0) >= 3 && "
        f"document.querySelector('#orders tr[data-order-id=\"{cancelled}\"] td.status').textContent === 'CANCELLED';"), 90)
    time.sleep(2)
    png = base64.b64decode(d.call("GET", f"/session/{d.session}/screenshot"))
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "wb") as f:
        f.write(png)
    print(f"{args.out}: {len(png)} bytes")


if __name__ == "__main__":
    main()
