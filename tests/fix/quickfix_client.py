"""A FIX 4.4 client nobody on the project wrote (QuickFIX, PyPI `quickfix`) driving the
fix-gateway through scenarios; run by tests/fix.rs. Prints one JSON summary line; exits non-zero
with the failed check on stderr.

Phases:
  trade    ALICE and BOB: orders of every type, fills between them, cancel, replace, refusals,
           a gap in each direction (our resend request, the gateway's resend).
  rest     ALICE rests an order, then the process ends (the test kills the gateway next).
  recover  ALICE logs on again after the gateway's kill -9 and restart: the execution reports
           made from fills while it was down arrive (by resend), none twice.
  burst    ALICE sends --count orders against BOB's resting liquidity while the test kills and
           restarts the gateway; waits until every order has its final report.

Every execution report received is appended to <dir>/reports.jsonl (all phases share it), so a
later phase can check that no report was ever delivered twice.
"""

import argparse
import json
import os
import sys
import threading
import time

import quickfix as fix

SOH = "\x01"


class Failed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failed(what)


def field(msg, tag):
    return msg.getField(tag) if msg.isSetField(tag) else None


def header(msg, tag):
    h = msg.getHeader()
    return h.getField(tag) if h.isSetField(tag) else None


class App(fix.Application):
    def __init__(self, keys, reports_path):
        super().__init__()
        self.keys = keys
        self.lock = threading.Condition()
        self.logged_on = set()
        self.reports = []  # (session, dict) in arrival order
        self.admin_in = []  # (session, msg type, dict of a few fields)
        self.reports_path = reports_path

    def onCreate(self, sid):
        pass

    def onLogon(self, sid):
        with self.lock:
            self.logged_on.add(sid.getSenderCompID().getValue())
            self.lock.notify_all()

    def onLogout(self, sid):
        with self.lock:
            self.logged_on.discard(sid.getSenderCompID().getValue())
            self.lock.notify_all()

    def toAdmin(self, msg, sid):
        if header(msg, 35) == "A":
            who = sid.getSenderCompID().getValue()
            msg.setField(fix.StringField(553, who))
            msg.setField(fix.StringField(554, self.keys[who]))

    def fromAdmin(self, msg, sid):
        t = header(msg, 35)
        info = {k: field(msg, k) for k in (7, 16, 36, 123, 58)}
        info["34"] = header(msg, 34)
        info["43"] = header(msg, 43)
        with self.lock:
            self.admin_in.append((sid.getSenderCompID().getValue(), t, info))
            self.lock.notify_all()

    def toApp(self, msg, sid):
        pass

    def fromApp(self, msg, sid):
        who = sid.getSenderCompID().getValue()
        r = {str(k): field(msg, k) for k in (11, 41, 37, 17, 150, 39, 14, 151, 6, 31, 32, 38, 44, 58, 103, 102, 434, 55)}
        r["35"] = header(msg, 35)
        r["34"] = int(header(msg, 34))
        r["43"] = header(msg, 43)
        r["session"] = who
        with self.lock:
            self.reports.append(r)
            with open(self.reports_path, "a") as f:
                f.write(json.dumps(r) + "\n")
            self.lock.notify_all()

    # ---- waiting -------------------------------------------------------------------------

    def wait(self, cond, what, timeout=20.0):
        deadline = time.time() + timeout
        with self.lock:
            while True:
                got = cond()
                if got:
                    return got
                left = deadline - time.time()
                if left <= 0:
                    raise Failed(f"timed out waiting for {what}; last reports: {self.reports[-5:]}")
                self.lock.wait(min(left, 0.2))

    def wait_logon(self, *who):
        self.wait(lambda: all(w in self.logged_on for w in who), f"logon of {who}")

    def report(self, session, timeout=20.0, **want):
        """The first report of `session` matching every tag=value in `want` (tags as strings)."""
        want = {k.lstrip("_"): v for k, v in want.items()}

        def find():
            for s, r in [(r["session"], r) for r in self.reports]:
                if s == session and all(r.get(k) == v for k, v in want.items()):
                    return r
            return None

        return self.wait(find, f"{session} report {want}", timeout)

    def count(self, session, **want):
        want = {k.lstrip("_"): v for k, v in want.items()}
        with self.lock:
            return sum(1 for r in self.reports if r["session"] == session and all(r.get(k) == v for k, v in want.items()))


def settings_file(d, port, sessions, heartbeat):
    text = f"""[DEFAULT]
ConnectionType=initiator
ReconnectInterval=1
FileStorePath={d}/store
FileLogPath={d}/log
StartTime=00:00:00
EndTime=00:00:00
UseDataDictionary=N
HeartBtInt={heartbeat}
SocketConnectHost=127.0.0.1
SocketConnectPort={port}
ResetOnLogon=N
ResetOnLogout=N
ResetOnDisconnect=N
PersistMessages=Y
"""
    for s in sessions:
        text += f"""
[SESSION]
BeginString=FIX.4.4
SenderCompID={s}
TargetCompID=KAPPA
"""
    path = os.path.join(d, "client.cfg")
    with open(path, "w") as f:
        f.write(text)
    return path


def sid(who):
    return fix.SessionID("FIX.4.4", who, "KAPPA")


def send(who, msg_type, fields):
    m = fix.Message()
    m.getHeader().setField(fix.MsgType(msg_type))
    for tag, value in fields:
        m.setField(fix.StringField(tag, str(value)))
    check(fix.Session.sendToTarget(m, sid(who)), f"sendToTarget {msg_type} {fields}")


def now():
    return time.strftime("%Y%m%d-%H:%M:%S", time.gmtime())


def order(who, cl, side, qty, price=None, tif=None, exec_inst=None, symbol="TCS"):
    f = [(11, cl), (55, symbol), (54, side), (38, qty), (60, now())]
    f.append((40, "2" if price is not None else "1"))
    if price is not None:
        f.append((44, price))
    if tif is not None:
        f.append((59, tif))
    if exec_inst is not None:
        f.append((18, exec_inst))
    send(who, "D", f)


def cancel(who, cl, orig, side, symbol="TCS"):
    send(who, "F", [(11, cl), (41, orig), (55, symbol), (54, side), (60, now())])


def replace(who, cl, orig, side, qty, price, symbol="TCS"):
    send(who, "G", [(11, cl), (41, orig), (55, symbol), (54, side), (38, qty), (40, "2"), (44, price), (60, now())])


def phase_trade(app, checks):
    app.wait_logon("ALICE", "BOB")
    checks.append("logon with Username/Password for two traders")
    # A resting sell, then buys of every kind against it.
    order("ALICE", "A1", "2", 10, "15.5")
    app.report("ALICE", _11="A1", _150="0", _39="0")
    order("BOB", "B1", "1", 4, "15.5")
    b1 = app.report("BOB", _11="B1", _150="F", _39="2")
    check((b1["32"], b1["31"], b1["14"], b1["151"], b1["6"]) == ("4", "15.5", "4", "0", "15.5"), f"B1 fill {b1}")
    a1 = app.report("ALICE", _11="A1", _150="F", _14="4")
    check((a1["39"], a1["32"], a1["31"], a1["151"]) == ("1", "4", "15.5", "6"), f"A1 partial {a1}")
    checks.append("limit order fills against another session's order (LastPx/LastQty/CumQty/LeavesQty/AvgPx)")
    order("BOB", "B2", "1", 2, None, tif="3")  # market IOC
    app.report("BOB", _11="B2", _150="F", _39="2", _32="2")
    checks.append("market order (IOC)")
    order("BOB", "B3", "1", 10, "15.5", tif="4")  # FOK: only 4 left
    b3 = app.report("BOB", _11="B3", _150="4", _39="4")
    check("fok_unfillable" in (b3["58"] or ""), f"FOK text {b3}")
    check(app.count("BOB", _11="B3", _150="F") == 0, "FOK traded nothing")
    checks.append("FOK that cannot fill is cancelled whole")
    order("BOB", "B4", "1", 10, "15.5", tif="3")  # IOC: 4 fill, 6 cancelled
    app.report("BOB", _11="B4", _150="F", _32="4", _39="1")
    b4 = app.report("BOB", _11="B4", _150="4")
    check("ioc_remainder" in (b4["58"] or "") and b4["14"] == "4", f"IOC remainder {b4}")
    a1 = app.report("ALICE", _11="A1", _39="2")
    check((a1["14"], a1["151"], a1["6"]) == ("10", "0", "15.5"), f"A1 filled {a1}")
    checks.append("IOC fills what it can, the rest cancelled")
    # Post-only.
    order("ALICE", "A2", "1", 5, "15", exec_inst="6")
    app.report("ALICE", _11="A2", _150="0")
    order("BOB", "B5", "2", 3, "15.1")
    app.report("BOB", _11="B5", _150="0")
    order("ALICE", "A3", "1", 5, "15.1", exec_inst="6")  # would cross B5
    a3 = app.report("ALICE", _11="A3", _150="8")
    check("post_only_would_cross" in (a3["58"] or ""), f"post-only refused {a3}")
    checks.append("post-only via ExecInst=6: rests, and is refused when it would cross")
    # Replace and cancel.
    replace("ALICE", "A4", "A2", "1", 7, "15.05")
    a4 = app.report("ALICE", _11="A4", _150="5")
    check((a4["41"], a4["38"], a4["44"], a4["39"]) == ("A2", "7", "15.05", "0"), f"replaced {a4}")
    cancel("ALICE", "A5", "A4", "1")
    a5 = app.report("ALICE", _11="A5", _150="4", _39="4")
    check(a5["41"] == "A4", f"cancelled {a5}")
    cancel("ALICE", "A6", "A4", "1")
    a6 = app.report("ALICE", _11="A6", _35="9")
    check(a6["102"] == "0" and a6["434"] == "1", f"too late to cancel {a6}")
    replace("ALICE", "A6b", "NOPE", "1", 7, "15.05")
    r = app.report("ALICE", _11="A6b", _35="9")
    check(r["102"] == "1" and r["434"] == "2", f"unknown order {r}")
    checks.append("replace (OrigClOrdID kept), cancel, and cancel/replace rejects")
    # Refusals with the engine's reasons.
    order("ALICE", "A7", "1", 1, "15.03")
    r = app.report("ALICE", _11="A7", _150="8")
    check("price_off_tick" in r["58"], f"off tick {r}")
    order("ALICE", "A8", "1", 1, "15", symbol="NOPE")
    r = app.report("ALICE", _11="A8", _150="8")
    check(r["103"] == "1" and "unknown_instrument" in r["58"], f"unknown symbol {r}")
    order("ALICE", "A1", "1", 1, "15")
    r = app.report("ALICE", _11="A1", _150="8")
    check(r["103"] == "6", f"duplicate ClOrdID {r}")
    order("ALICE", "A9", "1", 1, "15", tif="0")
    r = app.report("ALICE", _11="A9", _150="8")
    check("Day" in r["58"], f"Day refused {r}")
    checks.append("refusals: off tick, unknown symbol (103=1), duplicate ClOrdID (103=6), Day")
    # Gap, client → gateway: we skip 5 sequence numbers; the gateway asks for them and QuickFIX
    # gap-fills; the order sent after the gap is processed once.
    s = fix.Session.lookupSession(sid("BOB"))
    s.setNextSenderMsgSeqNum(s.getExpectedSenderNum() + 5)
    order("BOB", "B6", "1", 1, "14")
    app.report("BOB", _11="B6", _150="0")
    app.wait(lambda: any(w == "BOB" and t == "2" for w, t, _ in app.admin_in), "the gateway's ResendRequest")
    time.sleep(0.5)
    check(app.count("BOB", _11="B6", _150="0") == 1, "B6 acknowledged once")
    checks.append("a gap in our sequence: the gateway sends ResendRequest, QuickFIX fills it, the order counts once")
    # Gap, gateway → client: we pretend to have missed 3 of its messages and ask again.
    s = fix.Session.lookupSession(sid("ALICE"))
    before = len([r for r in app.reports if r["session"] == "ALICE"])
    s.setNextTargetMsgSeqNum(s.getExpectedTargetNum() - 3)
    send("ALICE", "1", [(112, "gap-probe")])
    app.wait(lambda: sum(1 for r in app.reports[before:] if r["session"] == "ALICE" and r["43"] == "Y") >= 1, "resent reports (PossDupFlag=Y)")
    time.sleep(0.5)
    checks.append("a gap in the gateway's sequence: our ResendRequest is answered with PossDup reports")
    fix.Session.lookupSession(sid("ALICE")).logout()
    fix.Session.lookupSession(sid("BOB")).logout()
    app.wait(lambda: not app.logged_on, "logout")
    checks.append("logout handshake")


def phase_rest(app, checks):
    app.wait_logon("ALICE")
    order("ALICE", "K1", "2", 10, "20")
    app.report("ALICE", _11="K1", _150="0")
    checks.append("resting order acknowledged")


def phase_recover(app, checks):
    app.wait_logon("ALICE")
    k1 = app.report("ALICE", _11="K1", _39="2", timeout=30)
    fills = [r for r in app.reports if r["11"] == "K1" and r["150"] == "F"]
    check(sorted(r["32"] for r in fills) == ["4", "6"], f"both fills made while down, once each: {fills}")
    check(all(r["43"] == "Y" for r in fills), "delivered by resend")
    check((k1["14"], k1["6"]) == ("10", "20"), f"final {k1}")
    checks.append("reports made while the gateway was down arrive after its restart, by resend")


def phase_burst(app, checks, count):
    app.wait_logon("ALICE", "BOB")
    order("BOB", "BZ", "2", count, "30")
    app.report("BOB", _11="BZ", _150="0")
    for i in range(count):
        order("ALICE", f"Z{i}", "1", 1, "30", tif="3")
        time.sleep(0.005)  # ≥ 1.5 s for 300: the test kills the gateway well within it
    # Every order ends: filled or cancelled (IOC), whatever happened to the gateway meanwhile.
    app.wait(lambda: all(app.count("ALICE", _11=f"Z{i}", _150="F") + app.count("ALICE", _11=f"Z{i}", _150="4") + app.count("ALICE", _11=f"Z{i}", _150="8") >= 1 for i in range(count)), "a final report for every burst order", timeout=180)
    checks.append(f"{count} IOC orders through a kill -9: each has its final report")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--phase", required=True)
    ap.add_argument("--keys", required=True, help="JSON {trader: key}")
    ap.add_argument("--count", type=int, default=200)
    a = ap.parse_args()
    keys = json.loads(a.keys)
    os.makedirs(a.dir, exist_ok=True)
    reports_path = os.path.join(a.dir, "reports.jsonl")
    sessions = sorted(keys)
    app = App(keys, reports_path)
    settings = fix.SessionSettings(settings_file(a.dir, a.port, sessions, 5))
    initiator = fix.SocketInitiator(app, fix.FileStoreFactory(settings), settings, fix.FileLogFactory(settings))
    initiator.start()
    checks = []
    ok, error = True, None
    try:
        if a.phase == "trade":
            phase_trade(app, checks)
        elif a.phase == "rest":
            phase_rest(app, checks)
        elif a.phase == "recover":
            phase_recover(app, checks)
        elif a.phase == "burst":
            phase_burst(app, checks, a.count)
        else:
            raise Failed(f"unknown phase {a.phase}")
    except Failed as e:
        ok, error = False, str(e)
    finally:
        initiator.stop()
    # No report delivered twice, over every phase so far: a resent copy (PossDup) of a report
    # already received is the protocol's redundancy, two different reports with one ExecID or one
    # MsgSeqNum is a defect.
    seen = {}
    dup = []
    with open(reports_path) as f:
        for line in f:
            r = json.loads(line)
            key = (r["session"], r["17"] or f"seq{r['34']}")
            if key in seen and seen[key] != (r["34"], r["150"], r["39"], r["14"]):
                dup.append((seen[key], r))
            seen.setdefault(key, (r["34"], r["150"], r["39"], r["14"]))
    if dup:
        ok, error = False, f"one ExecID, different reports: {dup[:3]}"
    summary = {
        "ok": ok,
        "error": error,
        "checks": checks,
        "reports": len(app.reports),
        "possdup": sum(1 for r in app.reports if r["43"] == "Y"),
        "distinct_reports_total": len(seen),
        "gateway_resend_requests": sum(1 for _, t, _ in app.admin_in if t == "2"),
        "gap_fills": sum(1 for _, t, i in app.admin_in if t == "4" and i.get(123) == "Y"),
        "burst_filled": len({r["11"] for r in app.reports if (r["11"] or "").startswith("Z") and r["150"] == "F"}),
    }
    print(json.dumps(summary))
    if not ok:
        print(error, file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
