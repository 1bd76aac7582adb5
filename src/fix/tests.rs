//! The gateway state machine driven as a FIX client would drive it, with the match maker's
//! `order-events` records fed by hand. (QuickFIX drives the real process in `tests/fix.rs`.)

use super::codec::{decode, utc_timestamp, Decoded, Message, Problem};
use super::gateway::{Config, Gateway, Input, Output};
use super::state::State;
use super::tag::*;
use crate::config::load_instruments;
use crate::serving::orders::IdAllocator;
use crate::wire::OrderMessage;

const T0: i64 = 1_790_000_000_000;

struct Client {
    gw: Gateway,
    now: i64,
    /// Every record committed so far (the journal).
    journal: Vec<super::state::Record>,
    /// Bytes sent per connection, decoded.
    inbox: Vec<(u64, Message)>,
    published: Vec<(u64, OrderMessage)>,
    /// Acknowledge publications at once (else they wait in `unacked`).
    auto_ack: bool,
    unacked: Vec<(u64, u32)>,
    /// Look-ups asked for: (order id, publication).
    verifies: Vec<(u64, u32)>,
    closed: Vec<u64>,
    /// `Output::Send`s so far (a chunk may hold many messages).
    sends: usize,
    seq: std::collections::HashMap<String, u64>,
    event_offset: i64,
}

fn auth() -> super::gateway::Authenticate {
    Box::new(|key: &str| match key {
        "key-alice" => Ok("ALICE".to_string()),
        "key-bob" => Ok("BOB".to_string()),
        _ => Err("unknown API key".to_string()),
    })
}

fn gateway(state: State, cfg: Config) -> Gateway {
    Gateway::new(
        cfg,
        load_instruments(None).unwrap(),
        IdAllocator::with_key(b"test"),
        auth(),
        state,
    )
}

impl Client {
    fn new() -> Self {
        Self::resume(State::default())
    }

    fn resume(state: State) -> Self {
        Self::with(state, Config::default())
    }

    fn with(state: State, cfg: Config) -> Self {
        let mut gw = gateway(state, cfg);
        gw.start_partition(0, 0);
        let mut c = Client {
            gw,
            now: T0,
            journal: Vec::new(),
            inbox: Vec::new(),
            published: Vec::new(),
            auto_ack: true,
            unacked: Vec::new(),
            verifies: Vec::new(),
            closed: Vec::new(),
            sends: 0,
            seq: Default::default(),
            event_offset: 0,
        };
        c.drain();
        c
    }

    fn drain(&mut self) {
        let (records, outputs) = self.gw.take();
        self.journal.extend(records);
        for o in outputs {
            match o {
                Output::Send(c, bytes) => {
                    self.sends += 1;
                    let mut at = 0;
                    while at < bytes.len() {
                        match decode(&bytes[at..], 1 << 20) {
                            Decoded::Message { message, len } => {
                                self.inbox.push((c, message));
                                at += len;
                            }
                            other => panic!("gateway sent undecodable bytes: {other:?}"),
                        }
                    }
                }
                Output::Close(c) => self.closed.push(c),
                Output::Publish {
                    order_id,
                    seq,
                    payload,
                    ..
                } => {
                    let m: OrderMessage = serde_json::from_slice(&payload).unwrap();
                    self.published.push((order_id, m));
                    if self.auto_ack {
                        self.gw.handle(
                            Input::Published {
                                order_id,
                                seq,
                                result: Ok(()),
                            },
                            self.now,
                        );
                        let (r, o) = self.gw.take();
                        assert!(o.is_empty());
                        self.journal.extend(r);
                    } else {
                        self.unacked.push((order_id, seq));
                    }
                }
                Output::Verify { order_id, seq, .. } => self.verifies.push((order_id, seq)),
            }
        }
    }

    fn input(&mut self, i: Input) {
        self.gw.handle(i, self.now);
        self.drain();
    }

    fn connect(&mut self, conn: u64) {
        self.input(Input::Connected(conn));
    }

    /// A message from `sender` with the next sequence number (or `seq`).
    fn msg(
        &mut self,
        sender: &str,
        msg_type: &str,
        fields: &[(u32, &str)],
        seq: Option<u64>,
    ) -> Message {
        let next = self.seq.entry(sender.to_string()).or_insert(1);
        let n = seq.unwrap_or(*next);
        if seq.is_none() {
            *next += 1;
        }
        let mut body = Message::new(msg_type);
        for (t, v) in fields {
            body.push(*t, *v);
        }
        Message::with_header(&body, sender, "KAPPA", n, &utc_timestamp(self.now))
    }

    fn send(&mut self, conn: u64, sender: &str, msg_type: &str, fields: &[(u32, &str)]) {
        let m = self.msg(sender, msg_type, fields, None);
        self.input(Input::Message(conn, m));
    }

    fn logon(&mut self, conn: u64, sender: &str, key: &str) {
        self.connect(conn);
        self.send(
            conn,
            sender,
            "A",
            &[(ENCRYPT_METHOD, "0"), (HEART_BT_INT, "30"), (PASSWORD, key)],
        );
    }

    fn take_inbox(&mut self, conn: u64) -> Vec<Message> {
        let (mine, rest): (Vec<_>, Vec<_>) = self.inbox.drain(..).partition(|(c, _)| *c == conn);
        self.inbox = rest;
        mine.into_iter().map(|(_, m)| m).collect()
    }

    fn event(&mut self, json: serde_json::Value) {
        let offset = self.event_offset;
        self.event_offset += 1;
        self.input(Input::Event {
            partition: 0,
            offset,
            payload: serde_json::to_vec(&json).unwrap(),
        });
    }
}

fn types(ms: &[Message]) -> Vec<String> {
    ms.iter().map(|m| m.msg_type().to_string()).collect()
}

fn seqs(ms: &[Message]) -> Vec<u64> {
    ms.iter().map(|m| m.get_u64(MSG_SEQ_NUM).unwrap()).collect()
}

#[test]
fn logon_with_the_traders_key_heartbeats_and_test_requests() {
    let mut c = Client::new();
    c.logon(1, "ALICE", "key-alice");
    let out = c.take_inbox(1);
    assert_eq!(types(&out), ["A"]);
    assert_eq!(out[0].get(TARGET_COMP_ID), Some("ALICE"));
    assert_eq!(out[0].get(HEART_BT_INT), Some("30"));
    assert_eq!(c.gw.sessions_logged_on(), 1);
    c.send(1, "ALICE", "1", &[(TEST_REQ_ID, "ping-1")]);
    let out = c.take_inbox(1);
    assert_eq!(types(&out), ["0"]);
    assert_eq!(out[0].get(TEST_REQ_ID), Some("ping-1"));
    // Quiet for a heartbeat interval: we send a Heartbeat; quiet for 1.2 of it: a TestRequest;
    // no answer for another interval: the connection is closed.
    c.now += 30_000;
    c.input(Input::Tick);
    assert_eq!(types(&c.take_inbox(1)), ["0"]);
    c.now += 7_000;
    c.input(Input::Tick);
    assert_eq!(types(&c.take_inbox(1)), ["1"]);
    c.now += 31_000;
    c.input(Input::Tick);
    assert!(c.closed.contains(&1));
}

#[test]
fn logons_are_refused_for_wrong_keys_and_for_a_second_connection() {
    let mut c = Client::new();
    let refused = |c: &mut Client, conn: u64, fields: &[(u32, &str)], sender: &str| {
        c.connect(conn);
        let m = c.msg(sender, "A", fields, Some(1));
        c.input(Input::Message(conn, m));
        let out = c.take_inbox(conn);
        assert_eq!(types(&out), ["5"], "{fields:?}");
        assert!(c.closed.contains(&conn));
        out[0].get(TEXT).unwrap().to_string()
    };
    let t = refused(
        &mut c,
        1,
        &[(HEART_BT_INT, "30"), (PASSWORD, "nope")],
        "ALICE",
    );
    assert!(t.contains("authentication failed"), "{t}");
    let t = refused(
        &mut c,
        2,
        &[(HEART_BT_INT, "30"), (PASSWORD, "key-bob")],
        "ALICE",
    );
    assert!(t.contains("does not belong"), "{t}");
    let t = refused(&mut c, 3, &[(HEART_BT_INT, "30")], "ALICE");
    assert!(t.contains("Password"), "{t}");
    let t = refused(
        &mut c,
        4,
        &[(HEART_BT_INT, "0"), (PASSWORD, "key-alice")],
        "ALICE",
    );
    assert!(t.contains("HeartBtInt"), "{t}");
    let t = refused(
        &mut c,
        5,
        &[
            (HEART_BT_INT, "30"),
            (PASSWORD, "key-alice"),
            (USERNAME, "BOB"),
        ],
        "ALICE",
    );
    assert!(t.contains("Username"), "{t}");
    assert_eq!(c.gw.sessions_logged_on(), 0);
    assert!(
        c.gw.state().sessions.is_empty(),
        "a refused logon leaves no session state"
    );
    // Logged on, then a second logon for the same CompID: refused, the first unaffected.
    c.seq.clear();
    c.logon(10, "ALICE", "key-alice");
    assert_eq!(types(&c.take_inbox(10)), ["A"]);
    let t = refused(
        &mut c,
        11,
        &[(HEART_BT_INT, "30"), (PASSWORD, "key-alice")],
        "ALICE",
    );
    assert!(t.contains("already logged on"), "{t}");
    assert!(!c.closed.contains(&10));
    c.send(10, "ALICE", "1", &[(TEST_REQ_ID, "still-here")]);
    assert_eq!(types(&c.take_inbox(10)), ["0"]);
}

/// ALICE's NewOrderSingle on connection 1.
fn new_order(c: &mut Client, cl: &str, side: &str, qty: &str, price: Option<&str>, tif: &str) {
    let mut f = vec![
        (CL_ORD_ID, cl),
        (SYMBOL, "TCS"),
        (SIDE, side),
        (ORDER_QTY, qty),
        (TIME_IN_FORCE, tif),
        (TRANSACT_TIME, "20261126-21:00:00"),
    ];
    match price {
        Some(p) => f.extend([(ORD_TYPE, "2"), (PRICE, p)]),
        None => f.push((ORD_TYPE, "1")),
    }
    c.send(1, "ALICE", "D", &f);
}

fn ev(order_id: u64, trader: &str, status: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut v = serde_json::json!({"order_id": order_id, "trader": trader, "instrument": "TCS", "status": status, "ts_ms": 1});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

#[test]
fn an_order_is_published_and_its_fills_come_back_as_execution_reports() {
    let mut c = Client::new();
    c.logon(1, "ALICE", "key-alice");
    c.take_inbox(1);
    new_order(&mut c, "A-1", "1", "10", Some("15.05"), "1");
    assert!(
        c.take_inbox(1).is_empty(),
        "nothing until the engine answers"
    );
    let (id, m) = c.published.pop().unwrap();
    assert_eq!(m.trader.as_deref(), Some("ALICE"));
    assert_eq!(m.instrument, "TCS");
    assert_eq!(m.trxn_type.as_deref(), Some("BUY"));
    assert_eq!(m.price.unwrap().to_string(), "15.05");
    assert_eq!(m.quantity.unwrap().to_string(), "10");
    assert_eq!(m.time_in_force.as_deref(), Some("GTC"));
    assert_eq!(id, m.id);
    // Someone else's order events are not ours.
    c.event(ev(12345, "BOB", "NEW", serde_json::json!({})));
    assert!(c.take_inbox(1).is_empty());
    // Two fills at different prices, then the rest.
    c.event(ev(id, "ALICE", "PARTIALLY_FILLED", serde_json::json!({"filled": 4, "leaves": 6, "quantity": 10, "price": 15.05, "last_price": 15.0, "last_quantity": 4, "order_type": "LIMIT", "time_in_force": "GTC"})));
    c.event(ev(id, "ALICE", "PARTIALLY_FILLED", serde_json::json!({"filled": 7, "leaves": 3, "quantity": 10, "price": 15.05, "last_price": 15.05, "last_quantity": 3})));
    // The same event again (a re-read) changes nothing.
    c.event_offset -= 1;
    c.event(ev(id, "ALICE", "PARTIALLY_FILLED", serde_json::json!({"filled": 7, "leaves": 3, "quantity": 10, "price": 15.05, "last_price": 15.05, "last_quantity": 3})));
    c.event(ev(id, "ALICE", "FILLED", serde_json::json!({"filled": 10, "leaves": 0, "quantity": 10, "price": 15.05, "last_price": 15.05, "last_quantity": 3})));
    let out = c.take_inbox(1);
    assert_eq!(types(&out), ["8", "8", "8", "8"]);
    let f = |m: &Message, t| m.get(t).unwrap().to_string();
    assert_eq!(
        (f(&out[0], EXEC_TYPE), f(&out[0], ORD_STATUS)),
        ("0".into(), "0".into()),
        "New first"
    );
    assert_eq!(f(&out[0], LEAVES_QTY), "10");
    assert_eq!(
        (f(&out[1], EXEC_TYPE), f(&out[1], ORD_STATUS)),
        ("F".into(), "1".into())
    );
    assert_eq!(
        (
            f(&out[1], LAST_PX),
            f(&out[1], LAST_QTY),
            f(&out[1], CUM_QTY),
            f(&out[1], LEAVES_QTY)
        ),
        ("15".into(), "4".into(), "4".into(), "6".into())
    );
    assert_eq!(f(&out[1], AVG_PX), "15");
    // (4 × 15 + 3 × 15.05) / 7 = 15.021428571… → 15.021429 (the money rule: 6 places, half even)
    assert_eq!(f(&out[2], AVG_PX), "15.021429");
    assert_eq!(
        (
            f(&out[3], ORD_STATUS),
            f(&out[3], CUM_QTY),
            f(&out[3], LEAVES_QTY)
        ),
        ("2".into(), "10".into(), "0".into())
    );
    // (4 × 15 + 6 × 15.05) / 10 = 15.03
    assert_eq!(f(&out[3], AVG_PX), "15.03");
    for m in &out {
        assert_eq!(m.get(CL_ORD_ID), Some("A-1"));
        assert_eq!(m.get(ORDER_ID), Some(id.to_string().as_str()));
    }
    let exec_ids: std::collections::HashSet<_> = out.iter().map(|m| f(m, EXEC_ID)).collect();
    assert_eq!(exec_ids.len(), 4, "ExecIDs unique");
    assert!(
        c.gw.state().orders.is_empty(),
        "a filled order is forgotten"
    );
    // Its ClOrdID stays taken.
    new_order(&mut c, "A-1", "1", "10", Some("15.05"), "1");
    let out = c.take_inbox(1);
    assert_eq!(
        (f(&out[0], ORD_STATUS), f(&out[0], ORD_REJ_REASON)),
        ("8".into(), "6".into())
    );
    assert!(f(&out[0], TEXT).contains("duplicate_client_order_id"));
    assert!(c.published.is_empty());
}

#[test]
fn refusals_carry_the_engines_reason_codes() {
    let mut c = Client::new();
    c.logon(1, "ALICE", "key-alice");
    c.take_inbox(1);
    let cases = [
        ("R-1", "1", "10", Some("15.03"), "1", "price_off_tick"),
        ("R-2", "1", "0", Some("15.05"), "1", "quantity_not_positive"),
        ("R-3", "1", "10", Some("15.05"), "0", "Day"),
        ("R-4", "7", "10", Some("15.05"), "1", "Side (54)"),
        ("R-5", "1", "10", Some("100000000"), "1", "price_too_large"),
    ];
    for (cl, side, qty, px, tif, why) in cases {
        new_order(&mut c, cl, side, qty, px, tif);
        let out = c.take_inbox(1);
        assert_eq!(types(&out), ["8"], "{cl}");
        assert_eq!(out[0].get(ORD_STATUS), Some("8"), "{cl}");
        assert_eq!(out[0].get(CL_ORD_ID), Some(cl));
        assert!(
            out[0].get(TEXT).unwrap().contains(why),
            "{cl}: {:?}",
            out[0].get(TEXT)
        );
    }
    // Unknown symbol: OrdRejReason 1.
    c.send(
        1,
        "ALICE",
        "D",
        &[
            (CL_ORD_ID, "R-6"),
            (SYMBOL, "NOPE"),
            (SIDE, "1"),
            (ORDER_QTY, "1"),
            (ORD_TYPE, "2"),
            (PRICE, "1"),
        ],
    );
    let out = c.take_inbox(1);
    assert_eq!(out[0].get(ORD_REJ_REASON), Some("1"));
    assert!(c.published.is_empty(), "nothing refused reaches orders");
    // Post-only (ExecInst 6) and IOC/FOK map to the order's terms.
    c.send(
        1,
        "ALICE",
        "D",
        &[
            (CL_ORD_ID, "P-1"),
            (SYMBOL, "TCS"),
            (SIDE, "2"),
            (ORDER_QTY, "5"),
            (ORD_TYPE, "2"),
            (PRICE, "16"),
            (EXEC_INST, "6"),
        ],
    );
    c.send(
        1,
        "ALICE",
        "D",
        &[
            (CL_ORD_ID, "I-1"),
            (SYMBOL, "TCS"),
            (SIDE, "2"),
            (ORDER_QTY, "5"),
            (ORD_TYPE, "2"),
            (PRICE, "16"),
            (TIME_IN_FORCE, "3"),
        ],
    );
    c.send(
        1,
        "ALICE",
        "D",
        &[
            (CL_ORD_ID, "F-1"),
            (SYMBOL, "TCS"),
            (SIDE, "2"),
            (ORDER_QTY, "5"),
            (ORD_TYPE, "1"),
            (TIME_IN_FORCE, "4"),
        ],
    );
    let p: Vec<_> = c
        .published
        .iter()
        .map(|(_, m)| (m.post_only, m.time_in_force.clone(), m.order_type.clone()))
        .collect();
    assert_eq!(
        p,
        [
            (
                Some(true),
                Some("GTC".to_string()),
                Some("LIMIT".to_string())
            ),
            (None, Some("IOC".to_string()), Some("LIMIT".to_string())),
            (None, Some("FOK".to_string()), Some("MARKET".to_string())),
        ]
    );
    // An engine refusal (post-only would cross) comes back as a rejected report.
    let (id, _) = c.published[0].clone();
    c.event(ev(
        id,
        "ALICE",
        "REJECTED",
        serde_json::json!({"reason": "post_only_would_cross", "command": "NEW"}),
    ));
    let out = c.take_inbox(1);
    assert_eq!(
        (
            out[0].get(EXEC_TYPE),
            out[0].get(ORD_STATUS),
            out[0].get(CL_ORD_ID)
        ),
        (Some("8"), Some("8"), Some("P-1"))
    );
    assert!(out[0].get(TEXT).unwrap().contains("post_only_would_cross"));
}

#[test]
fn cancel_and_replace_keep_client_order_ids_and_refusals_are_cancel_rejects() {
    let mut c = Client::new();
    c.logon(1, "ALICE", "key-alice");
    new_order(&mut c, "O-1", "2", "10", Some("16"), "1");
    let (id, _) = c.published.pop().unwrap();
    c.event(ev(
        id,
        "ALICE",
        "NEW",
        serde_json::json!({"filled": 0, "leaves": 10, "quantity": 10, "price": 16}),
    ));
    c.take_inbox(1);
    // Replace: new total 12 at 16.5 → an AMEND with total_quantity 12 (the engine subtracts the fills).
    c.send(
        1,
        "ALICE",
        "G",
        &[
            (CL_ORD_ID, "O-2"),
            (ORIG_CL_ORD_ID, "O-1"),
            (SYMBOL, "TCS"),
            (SIDE, "2"),
            (ORDER_QTY, "12"),
            (ORD_TYPE, "2"),
            (PRICE, "16.5"),
        ],
    );
    let (aid, m) = c.published.pop().unwrap();
    assert_eq!(
        (
            aid,
            m.action.as_deref(),
            m.total_quantity.map(|q| q.to_string()),
            m.price.map(|p| p.to_string())
        ),
        (id, Some("AMEND"), Some("12".into()), Some("16.5".into()))
    );
    // A second change while one is in flight: refused (CxlRejReason 3).
    c.send(
        1,
        "ALICE",
        "F",
        &[
            (CL_ORD_ID, "O-3"),
            (ORIG_CL_ORD_ID, "O-1"),
            (SYMBOL, "TCS"),
            (SIDE, "2"),
        ],
    );
    let out = c.take_inbox(1);
    assert_eq!(
        (
            out[0].msg_type(),
            out[0].get(CXL_REJ_REASON),
            out[0].get(CXL_REJ_RESPONSE_TO)
        ),
        ("9", Some("3"), Some("1"))
    );
    c.event(ev(
        id,
        "ALICE",
        "AMENDED",
        serde_json::json!({"filled": 0, "leaves": 12, "quantity": 12, "price": 16.5}),
    ));
    let out = c.take_inbox(1);
    assert_eq!(
        (
            out[0].get(EXEC_TYPE),
            out[0].get(CL_ORD_ID),
            out[0].get(ORIG_CL_ORD_ID),
            out[0].get(ORDER_QTY),
            out[0].get(PRICE)
        ),
        (
            Some("5"),
            Some("O-2"),
            Some("O-1"),
            Some("12"),
            Some("16.5")
        )
    );
    // Cancel naming the new ClOrdID; the engine refuses it (already filled meanwhile) → 35=9.
    c.send(
        1,
        "ALICE",
        "F",
        &[
            (CL_ORD_ID, "O-4"),
            (ORIG_CL_ORD_ID, "O-2"),
            (SYMBOL, "TCS"),
            (SIDE, "2"),
        ],
    );
    assert_eq!(
        c.published.pop().unwrap().1.action.as_deref(),
        Some("CANCEL")
    );
    c.event(ev(id, "ALICE", "FILLED", serde_json::json!({"filled": 12, "leaves": 0, "quantity": 12, "price": 16.5, "last_price": 16.5, "last_quantity": 12})));
    c.event(ev(
        id,
        "ALICE",
        "REJECTED",
        serde_json::json!({"reason": "order_not_active", "command": "CANCEL"}),
    ));
    let out = c.take_inbox(1);
    assert_eq!(types(&out), ["8", "9"]);
    assert_eq!(out[0].get(ORD_STATUS), Some("2"));
    assert_eq!(
        (
            out[1].get(CL_ORD_ID),
            out[1].get(ORIG_CL_ORD_ID),
            out[1].get(CXL_REJ_REASON),
            out[1].get(ORD_STATUS)
        ),
        (Some("O-4"), Some("O-2"), Some("0"), Some("2"))
    );
    assert!(
        c.gw.state().orders.is_empty(),
        "finished and nothing in flight: forgotten"
    );
    // Now too late, answered by the gateway itself.
    c.send(
        1,
        "ALICE",
        "F",
        &[
            (CL_ORD_ID, "O-5"),
            (ORIG_CL_ORD_ID, "O-1"),
            (SYMBOL, "TCS"),
            (SIDE, "2"),
        ],
    );
    let out = c.take_inbox(1);
    assert_eq!(
        (
            out[0].msg_type(),
            out[0].get(CXL_REJ_REASON),
            out[0].get(ORD_STATUS)
        ),
        ("9", Some("0"), Some("2"))
    );
    // A cancel that succeeds.
    new_order(&mut c, "C-1", "1", "3", Some("14"), "1");
    let (id2, _) = c.published.pop().unwrap();
    c.send(
        1,
        "ALICE",
        "F",
        &[
            (CL_ORD_ID, "C-2"),
            (ORIG_CL_ORD_ID, "C-1"),
            (SYMBOL, "TCS"),
            (SIDE, "1"),
        ],
    );
    c.event(ev(
        id2,
        "ALICE",
        "NEW",
        serde_json::json!({"filled": 0, "leaves": 3, "quantity": 3, "price": 14}),
    ));
    c.event(ev(id2, "ALICE", "CANCELLED", serde_json::json!({"reason": "requested", "filled": 0, "leaves": 0, "quantity": 3, "price": 14})));
    let out = c.take_inbox(1);
    assert_eq!(types(&out), ["8", "8"]);
    assert_eq!(
        (
            out[1].get(EXEC_TYPE),
            out[1].get(ORD_STATUS),
            out[1].get(CL_ORD_ID),
            out[1].get(ORIG_CL_ORD_ID)
        ),
        (Some("4"), Some("4"), Some("C-2"), Some("C-1"))
    );
    // Unknown OrigClOrdID.
    c.send(
        1,
        "ALICE",
        "F",
        &[
            (CL_ORD_ID, "X-1"),
            (ORIG_CL_ORD_ID, "NEVER"),
            (SYMBOL, "TCS"),
            (SIDE, "1"),
        ],
    );
    let out = c.take_inbox(1);
    assert_eq!(
        (out[0].msg_type(), out[0].get(CXL_REJ_REASON)),
        ("9", Some("1"))
    );
}

#[test]
fn a_sequence_gap_is_resent_and_too_low_without_possdup_ends_the_session() {
    let mut c = Client::new();
    c.logon(1, "ALICE", "key-alice");
    c.take_inbox(1);
    // Seq 2 lost: 3 arrives.
    let lost = c.msg(
        "ALICE",
        "D",
        &[
            (CL_ORD_ID, "G-1"),
            (SYMBOL, "TCS"),
            (SIDE, "1"),
            (ORDER_QTY, "1"),
            (ORD_TYPE, "2"),
            (PRICE, "15"),
        ],
        None,
    );
    c.send(
        1,
        "ALICE",
        "D",
        &[
            (CL_ORD_ID, "G-2"),
            (SYMBOL, "TCS"),
            (SIDE, "1"),
            (ORDER_QTY, "1"),
            (ORD_TYPE, "2"),
            (PRICE, "15"),
        ],
    );
    let out = c.take_inbox(1);
    assert_eq!(types(&out), ["2"]);
    assert_eq!(
        (out[0].get(BEGIN_SEQ_NO), out[0].get(END_SEQ_NO)),
        (Some("2"), Some("0"))
    );
    assert!(
        c.published.is_empty(),
        "the message after the gap waits for the resend"
    );
    // The resend: 2 and 3 again, with PossDupFlag.
    let mut resent2 = lost.clone();
    resent2.set_after_header(POSS_DUP_FLAG, "Y");
    c.input(Input::Message(1, resent2));
    let again3 = c.msg(
        "ALICE",
        "D",
        &[
            (CL_ORD_ID, "G-2"),
            (SYMBOL, "TCS"),
            (SIDE, "1"),
            (ORDER_QTY, "1"),
            (ORD_TYPE, "2"),
            (PRICE, "15"),
            (POSS_DUP_FLAG, "Y"),
        ],
        Some(3),
    );
    c.input(Input::Message(1, again3.clone()));
    let cls: Vec<_> = c.published.iter().map(|(_, m)| m.id).collect();
    assert_eq!(cls.len(), 2, "both orders, once each");
    // A duplicate of 3 (PossDup) is ignored.
    c.input(Input::Message(1, again3));
    assert_eq!(c.published.len(), 2);
    assert!(c.take_inbox(1).is_empty());
    // Too low without PossDup: Logout, closed.
    let low = c.msg("ALICE", "0", &[], Some(2));
    c.input(Input::Message(1, low));
    let out = c.take_inbox(1);
    assert_eq!(types(&out), ["5"]);
    assert!(out[0].get(TEXT).unwrap().contains("MsgSeqNum too low"));
    assert!(c.closed.contains(&1));
}

#[test]
fn reports_made_while_disconnected_are_resent_after_logon_none_twice() {
    let mut c = Client::new();
    c.logon(1, "ALICE", "key-alice");
    new_order(&mut c, "D-1", "1", "5", Some("15"), "1");
    let (id, _) = c.published.pop().unwrap();
    c.event(ev(
        id,
        "ALICE",
        "NEW",
        serde_json::json!({"filled": 0, "leaves": 5, "quantity": 5, "price": 15}),
    ));
    let first = c.take_inbox(1);
    assert_eq!(seqs(&first), [1, 2]);
    c.input(Input::Disconnected(1));
    // Two fills while away: kept with sequence numbers 3 and 4.
    c.event(ev(id, "ALICE", "PARTIALLY_FILLED", serde_json::json!({"filled": 2, "leaves": 3, "quantity": 5, "price": 15, "last_price": 15, "last_quantity": 2})));
    c.event(ev(id, "ALICE", "FILLED", serde_json::json!({"filled": 5, "leaves": 0, "quantity": 5, "price": 15, "last_price": 15, "last_quantity": 3})));
    assert!(c.inbox.is_empty());
    // The gateway restarts: a new process from the journal alone.
    let mut replayed = State::default();
    for r in &c.journal {
        replayed.apply(r, 100_000);
    }
    assert_eq!(
        &replayed,
        c.gw.state(),
        "the journal rebuilds the live state"
    );
    let seq = c.seq.clone();
    let mut c = Client::resume(replayed);
    c.seq = seq;
    c.logon(2, "ALICE", "key-alice");
    let out = c.take_inbox(2);
    assert_eq!(types(&out), ["A"]);
    assert_eq!(
        seqs(&out),
        [5],
        "our next sequence number: the client sees a gap"
    );
    // The client asks for 3..: the two reports, PossDup, then nothing else.
    c.send(2, "ALICE", "2", &[(BEGIN_SEQ_NO, "3"), (END_SEQ_NO, "0")]);
    let out = c.take_inbox(2);
    assert_eq!(types(&out), ["8", "8", "4"]);
    assert_eq!(seqs(&out), [3, 4, 5]);
    assert_eq!(out[0].get(POSS_DUP_FLAG), Some("Y"));
    assert!(out[0].get(ORIG_SENDING_TIME).is_some());
    assert_eq!(
        (out[0].get(LAST_QTY), out[1].get(LAST_QTY)),
        (Some("2"), Some("3"))
    );
    assert_eq!(out[1].get(ORD_STATUS), Some("2"));
    assert_eq!(
        (out[2].get(GAP_FILL_FLAG), out[2].get(NEW_SEQ_NO)),
        (Some("Y"), Some("6")),
        "the Logon is gap-filled"
    );
    // The restarted gateway does not make the reports again from the same events.
    c.event_offset = 0;
    for _ in 0..3 {
        c.event(ev(id, "ALICE", "NEW", serde_json::json!({})));
    }
    assert!(c.take_inbox(2).is_empty());
    // Resend of a range with admin messages only: one gap fill.
    c.send(2, "ALICE", "2", &[(BEGIN_SEQ_NO, "1"), (END_SEQ_NO, "1")]);
    let out = c.take_inbox(2);
    assert_eq!(types(&out), ["4"], "seq 1 was our first Logon");
    assert_eq!(
        (out[0].get_u64(MSG_SEQ_NUM), out[0].get(NEW_SEQ_NO)),
        (Some(1), Some("2"))
    );
}

#[test]
fn sequence_numbers_survive_a_restart_and_reset_on_request() {
    let mut c = Client::new();
    c.logon(1, "ALICE", "key-alice");
    c.send(1, "ALICE", "0", &[]);
    c.send(1, "ALICE", "5", &[]);
    let out = c.take_inbox(1);
    assert_eq!(types(&out), ["A", "5"], "logout answered");
    assert!(c.closed.contains(&1));
    let st = c.gw.state().sessions["ALICE"].clone();
    assert_eq!((st.next_in, st.next_out), (4, 3));
    let mut c2 = Client::resume(c.gw.state().clone());
    c2.seq = c.seq.clone();
    c2.logon(2, "ALICE", "key-alice");
    assert_eq!(seqs(&c2.take_inbox(2)), [3]);
    // ResetSeqNumFlag=Y with seq 1: both sides back to 1.
    c2.input(Input::Disconnected(2));
    c2.connect(3);
    let m = c2.msg(
        "ALICE",
        "A",
        &[
            (HEART_BT_INT, "30"),
            (PASSWORD, "key-alice"),
            (RESET_SEQ_NUM_FLAG, "Y"),
        ],
        Some(1),
    );
    c2.input(Input::Message(3, m));
    let out = c2.take_inbox(3);
    assert_eq!(
        (seqs(&out), out[0].get(RESET_SEQ_NUM_FLAG)),
        (vec![1], Some("Y"))
    );
    assert_eq!(c2.gw.state().sessions["ALICE"].next_in, 2);
}

#[test]
fn sessions_and_client_order_ids_are_bounded() {
    let cfg = Config {
        max_sessions: 1,
        max_orders_per_session: 3,
        ..Config::default()
    };
    let mut c = Client::with(State::default(), cfg);
    c.logon(1, "ALICE", "key-alice");
    c.take_inbox(1);
    // A second trader: no room for its session.
    c.connect(2);
    let m = c.msg(
        "BOB",
        "A",
        &[(HEART_BT_INT, "30"), (PASSWORD, "key-bob")],
        Some(1),
    );
    c.input(Input::Message(2, m));
    let out = c.take_inbox(2);
    assert_eq!(types(&out), ["5"]);
    assert!(out[0].get(TEXT).unwrap().contains("--max-sessions"));
    assert_eq!(c.gw.state().sessions.len(), 1);
    // Three ClOrdIDs, then every new one is refused — orders, cancels and replaces alike.
    new_order(&mut c, "L-1", "1", "1", Some("14"), "1");
    new_order(&mut c, "L-2", "1", "1", Some("14"), "1");
    c.send(
        1,
        "ALICE",
        "F",
        &[
            (CL_ORD_ID, "L-3"),
            (ORIG_CL_ORD_ID, "L-1"),
            (SYMBOL, "TCS"),
            (SIDE, "1"),
        ],
    );
    assert_eq!(c.published.len(), 3);
    c.take_inbox(1);
    new_order(&mut c, "L-4", "1", "1", Some("14"), "1");
    c.send(
        1,
        "ALICE",
        "G",
        &[
            (CL_ORD_ID, "L-5"),
            (ORIG_CL_ORD_ID, "L-2"),
            (SYMBOL, "TCS"),
            (SIDE, "1"),
            (ORDER_QTY, "2"),
            (PRICE, "14"),
        ],
    );
    let out = c.take_inbox(1);
    assert_eq!(types(&out), ["8", "9"]);
    assert!(out
        .iter()
        .all(|m| m.get(TEXT).unwrap().contains("session_order_limit")));
    assert_eq!(c.published.len(), 3, "nothing refused was published");
    assert_eq!(c.gw.state().sessions["ALICE"].cl_ord_ids.len(), 3);
}

/// The journal's state as a restarted process would read it.
fn restart(c: &Client) -> Client {
    let mut replayed = State::default();
    for r in &c.journal {
        replayed.apply(r, 100_000);
    }
    assert_eq!(
        &replayed,
        c.gw.state(),
        "the journal rebuilds the live state"
    );
    let mut next = Client::resume(replayed);
    next.seq = c.seq.clone();
    next.auto_ack = c.auto_ack;
    next.event_offset = c.event_offset;
    next
}

#[test]
fn each_orders_record_is_delivered_exactly_once_through_lost_acknowledgements() {
    let mut c = Client::new();
    c.auto_ack = false;
    c.logon(1, "ALICE", "key-alice");
    // A new order and its cancel right away: both queued, in order, each acknowledged on its own.
    new_order(&mut c, "E-1", "1", "5", Some("14"), "1");
    c.send(
        1,
        "ALICE",
        "F",
        &[
            (CL_ORD_ID, "E-2"),
            (ORIG_CL_ORD_ID, "E-1"),
            (SYMBOL, "TCS"),
            (SIDE, "1"),
        ],
    );
    let actions: Vec<_> = c.published.iter().map(|(_, m)| m.action.clone()).collect();
    assert_eq!(actions, [None, Some("CANCEL".to_string())]);
    let id = c.published[0].0;
    assert_eq!(c.unacked, [(id, 0), (id, 1)]);
    // The cancel's acknowledgement comes first: the order's own record stays in the outbox.
    c.input(Input::Published {
        order_id: id,
        seq: 1,
        result: Ok(()),
    });
    let outbox: Vec<u32> = c.gw.state().orders[&id]
        .outbox
        .iter()
        .map(|p| p.seq)
        .collect();
    assert_eq!(outbox, [0]);
    // kill -9 now. The restarted gateway publishes nothing blind: it asks whether the record is
    // on the topic.
    c.published.clear();
    let mut c = restart(&c);
    c.gw.verify_outbox();
    c.drain();
    assert_eq!(c.verifies, [(id, 0)]);
    assert!(c.published.is_empty());
    // Not there: published again, the same record.
    c.input(Input::Verified {
        order_id: id,
        seq: 0,
        found: false,
    });
    assert_eq!(c.published.len(), 1);
    assert_eq!(c.published[0].0, id);
    // A delivery error is settled the same way; found means delivered.
    c.input(Input::Published {
        order_id: id,
        seq: 0,
        result: Err("timed out".into()),
    });
    assert_eq!(c.verifies, [(id, 0), (id, 0)]);
    assert_eq!(c.published.len(), 1, "not sent again blind");
    c.input(Input::Verified {
        order_id: id,
        seq: 0,
        found: true,
    });
    assert!(c.gw.state().orders[&id].outbox.is_empty());
    assert_eq!(c.gw.outbox_len(), 0);
}

#[test]
fn a_finished_order_is_kept_until_its_records_are_acknowledged_and_answers_match_their_change() {
    let mut c = Client::new();
    c.auto_ack = false;
    c.logon(1, "ALICE", "key-alice");
    new_order(&mut c, "H-1", "2", "5", Some("16"), "1");
    let id = c.published[0].0;
    c.event(ev(
        id,
        "ALICE",
        "NEW",
        serde_json::json!({"filled": 0, "leaves": 5, "quantity": 5, "price": 16}),
    ));
    c.send(
        1,
        "ALICE",
        "F",
        &[
            (CL_ORD_ID, "H-2"),
            (ORIG_CL_ORD_ID, "H-1"),
            (SYMBOL, "TCS"),
            (SIDE, "2"),
        ],
    );
    c.take_inbox(1);
    // An AMEND's refusal (someone else's, or stale) is not the answer to the pending cancel.
    c.event(ev(
        id,
        "ALICE",
        "REJECTED",
        serde_json::json!({"reason": "post_only_would_cross", "command": "AMEND"}),
    ));
    assert!(c.take_inbox(1).is_empty());
    assert!(c.gw.state().orders[&id].pending.is_some());
    // Filled before the cancel lands; the cancel refused: the order is finished...
    c.event(ev(id, "ALICE", "FILLED", serde_json::json!({"filled": 5, "leaves": 0, "quantity": 5, "price": 16, "last_price": 16, "last_quantity": 5})));
    c.event(ev(
        id,
        "ALICE",
        "REJECTED",
        serde_json::json!({"reason": "order_not_active", "command": "CANCEL"}),
    ));
    assert_eq!(types(&c.take_inbox(1)), ["8", "9"]);
    // ...but kept while its records are unacknowledged, then forgotten.
    assert!(c.gw.state().orders.contains_key(&id));
    for (order_id, seq) in std::mem::take(&mut c.unacked) {
        c.input(Input::Published {
            order_id,
            seq,
            result: Ok(()),
        });
    }
    assert!(!c.gw.state().orders.contains_key(&id));
}

#[test]
fn a_bad_field_is_rejected_and_the_session_goes_on() {
    let mut c = Client::new();
    c.logon(1, "ALICE", "key-alice");
    c.take_inbox(1);
    // Seq 2: a NewOrderSingle whose Text had no value (the codec left the field out).
    let mut m = c.msg(
        "ALICE",
        "D",
        &[
            (CL_ORD_ID, "Q-1"),
            (SYMBOL, "TCS"),
            (SIDE, "1"),
            (ORDER_QTY, "1"),
            (ORD_TYPE, "2"),
            (PRICE, "15"),
        ],
        None,
    );
    m.problem = Some(Problem {
        tag: Some(58),
        reason: 4,
        text: "tag 58 has no value".into(),
    });
    c.input(Input::Message(1, m));
    let out = c.take_inbox(1);
    assert_eq!(types(&out), ["3"]);
    assert_eq!(
        (
            out[0].get(REF_SEQ_NUM),
            out[0].get(REF_TAG_ID),
            out[0].get(SESSION_REJECT_REASON)
        ),
        (Some("2"), Some("58"), Some("4"))
    );
    assert!(c.published.is_empty());
    // Its sequence number is used: seq 3 is processed, no resend asked for.
    new_order(&mut c, "Q-2", "1", "1", Some("15"), "1");
    assert_eq!(c.published.len(), 1);
    assert!(c.take_inbox(1).is_empty());
}

#[test]
fn a_resend_request_that_goes_unanswered_is_asked_again() {
    let mut c = Client::new();
    c.logon(1, "ALICE", "key-alice");
    c.take_inbox(1);
    let skipped = c.msg("ALICE", "0", &[], Some(5));
    c.input(Input::Message(1, skipped));
    assert_eq!(types(&c.take_inbox(1)), ["2"]);
    // Still within the heartbeat interval: nothing more; past it (and 10 s): asked again.
    c.now += 5_000;
    c.input(Input::Tick);
    assert!(c.take_inbox(1).iter().all(|m| m.msg_type() != "2"));
    c.now += 30_000;
    c.input(Input::Tick);
    let again: Vec<_> = c
        .take_inbox(1)
        .into_iter()
        .filter(|m| m.msg_type() == "2")
        .collect();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].get(BEGIN_SEQ_NO), Some("2"));
}

#[test]
fn a_large_resend_goes_out_in_a_few_chunks() {
    let mut c = Client::new();
    c.logon(1, "ALICE", "key-alice");
    // 6 000 refused orders: 6 000 kept reports.
    for i in 0..6_000 {
        new_order(&mut c, &format!("R-{i}"), "1", "1", Some("15.01"), "1");
    }
    c.take_inbox(1);
    let before = c.sends;
    c.send(1, "ALICE", "2", &[(BEGIN_SEQ_NO, "1"), (END_SEQ_NO, "0")]);
    let out = c.take_inbox(1);
    assert_eq!(out.len(), 6_001, "the Logon gap-filled, then every report");
    assert_eq!(out[0].msg_type(), "4");
    assert!(out[1..]
        .iter()
        .all(|m| m.msg_type() == "8" && m.get(POSS_DUP_FLAG) == Some("Y")));
    let chunks = c.sends - before;
    assert!(chunks <= 4, "{chunks} sends for ~2 MB of resend");
}
