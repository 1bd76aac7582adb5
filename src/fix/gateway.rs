//! The gateway as one deterministic state machine: the FIX session layer (logon, sequence
//! numbers, heartbeats, resends, logout) and the mapping between FIX orders and the exchange's
//! `orders` / `order-events` topics.
//!
//! Inputs ([`Input`]) and the current time go in; out come [`Record`]s to journal, bytes to send
//! and orders to publish ([`Output`]). The I/O layer ([`super::server`]) writes the records
//! before it sends or publishes anything they account for, so after a crash the journal never
//! knows less than the counterparty or the broker has seen from us.
//!
//! Delivery of execution reports: every report gets its sequence number and is kept (journal)
//! when it is made, whether the session is connected or not. A trader who reconnects sees our
//! MsgSeqNum ahead of what it expects and asks for the gap (ResendRequest): the kept reports come
//! again, in order, with PossDupFlag; none is lost and none carries a sequence number twice.
//! Reports are made from `order-events` records read past the journal's cursor, once each.

use super::codec::{utc_timestamp, Message};
use super::state::{ClOrdRef, OrderData, Pending, Record, State, Stored};
use super::tag::*;
use crate::serving::orders::{prepare, IdAllocator, Refused};
use crate::topics::Partitioner;
use crate::wire::{money, OrderEventMessage, OrderMessage};
use kappa_engine::Instruments;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;

/// A TCP connection, numbered by the I/O layer.
pub type ConnId = u64;

/// Settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Our CompID: the TargetCompID (56) traders send to.
    pub comp_id: String,
    /// Application messages kept per session for resends.
    pub resend_window: usize,
    /// ClOrdIDs per session between sequence resets (new orders, cancels and replaces are
    /// refused beyond).
    pub max_orders_per_session: usize,
    /// Sessions kept (a logon of a trader without state when this many have some is refused).
    pub max_sessions: usize,
    /// Largest HeartBtInt (108) accepted, in seconds.
    pub max_heartbeat_s: u64,
    /// Largest difference between SendingTime (52) and our clock.
    pub sending_time_tolerance_ms: i64,
    /// A connection that has not logged on within this is closed.
    pub logon_timeout_ms: i64,
    /// Partitions of `orders` (orders go to their instrument's, [`Partitioner`]).
    pub order_partitions: i32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            comp_id: "KAPPA".into(),
            resend_window: 100_000,
            max_orders_per_session: 1_000_000,
            max_sessions: 64,
            max_heartbeat_s: 300,
            sending_time_tolerance_ms: 120_000,
            logon_timeout_ms: 10_000,
            order_partitions: 1,
        }
    }
}

/// What happened.
#[derive(Debug)]
pub enum Input {
    Connected(ConnId),
    /// A message that passed framing and checksum.
    Message(ConnId, Message),
    /// Bytes that did not ([`super::codec::Decoded::Garbled`]).
    Garbled(ConnId, String),
    Disconnected(ConnId),
    /// An `order-events` record.
    Event {
        partition: i32,
        offset: i64,
        payload: Vec<u8>,
    },
    /// The broker's answer to [`Output::Publish`].
    Published {
        order_id: u64,
        seq: u32,
        result: Result<(), String>,
    },
    /// The answer to [`Output::Verify`]: whether the record is on `orders`.
    Verified {
        order_id: u64,
        seq: u32,
        found: bool,
    },
    /// Where `orders` partitions end now (`(partition, high watermark)`), read now and then.
    Watermarks(Vec<(i32, i64)>),
    /// Time passed (heartbeats, timeouts, republishing).
    Tick,
}

/// What to do, after the records of the same step are written.
#[derive(Debug, PartialEq)]
pub enum Output {
    Send(ConnId, Vec<u8>),
    /// Close after sending what was queued before.
    Close(ConnId),
    /// Publish `payload` to `orders` partition `partition` with key `key` (the instrument).
    Publish {
        order_id: u64,
        seq: u32,
        partition: i32,
        key: String,
        payload: Vec<u8>,
    },
    /// Find out whether `payload` is on `orders` partition `partition` at or after offset
    /// `from` (its acknowledgement was lost: a restart, a delivery error); answered by
    /// [`Input::Verified`].
    Verify {
        order_id: u64,
        seq: u32,
        partition: i32,
        from: i64,
        payload: Vec<u8>,
    },
}

impl Output {
    /// Publishes publication `p` of order `order_id`.
    fn publish(order_id: u64, p: &super::state::Publication) -> Self {
        Output::Publish {
            order_id,
            seq: p.seq,
            partition: p.partition,
            key: p.key.clone(),
            payload: p.payload.clone(),
        }
    }

    /// Looks for publication `p` of order `order_id` on the topic.
    fn verify(order_id: u64, p: &super::state::Publication) -> Self {
        Output::Verify {
            order_id,
            seq: p.seq,
            partition: p.partition,
            from: p.scan_from,
            payload: p.payload.clone(),
        }
    }
}

/// Maps a Password (554) to the trader it authenticates, or a reason for refusing it.
pub type Authenticate = Box<dyn Fn(&str) -> Result<String, String> + Send>;

/// Counts for `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Sessions logged on now.
    pub sessions: u64,
    pub logons: u64,
    pub logons_refused: u64,
    pub messages_in: u64,
    pub garbled: u64,
    pub session_rejects: u64,
    pub orders_published: u64,
    pub orders_refused: u64,
    pub execution_reports: u64,
    pub cancel_rejects: u64,
    pub resend_requests_answered: u64,
    pub messages_resent: u64,
    pub events_read: u64,
}

/// A connection's transient state.
#[derive(Debug)]
struct Conn {
    session: Option<String>,
    opened_ms: i64,
    heartbeat_ms: i64,
    last_in_ms: i64,
    last_out_ms: i64,
    test_request_ms: Option<i64>,
    /// We asked for a resend up to this MsgSeqNum (inclusive) and it has not all come.
    resend_until: Option<u64>,
    resend_asked_ms: i64,
    logout_sent_ms: Option<i64>,
    closed: bool,
}

/// The cancel or replace request an OrderCancelReject answers.
struct CancelRef<'a> {
    session: &'a str,
    order_id: Option<u64>,
    cl: &'a str,
    orig: &'a str,
    replace: bool,
}

/// What an ExecutionReport says beyond the order's own state.
struct Exec<'a> {
    exec_type: char,
    status: char,
    cl: &'a str,
    orig: Option<&'a str>,
    last: Option<(Decimal, Decimal)>,
    text: Option<&'a str>,
}

/// The gateway.
pub struct Gateway {
    cfg: Config,
    instruments: Instruments,
    ids: IdAllocator,
    authenticate: Authenticate,
    state: State,
    conns: HashMap<ConnId, Conn>,
    /// Logged-on session → its connection.
    active: HashMap<String, ConnId>,
    /// Read position not yet journaled (irrelevant events move it without a record).
    cursor: BTreeMap<i32, i64>,
    partitioner: Partitioner,
    /// The latest high watermark of each `orders` partition.
    watermarks: HashMap<i32, i64>,
    records: Vec<Record>,
    outputs: Vec<Output>,
    stats: Stats,
    /// Shutting down: no more logons.
    stopping: bool,
}

fn parse_timestamp(s: &str) -> Option<i64> {
    let fmt = if s.len() > 17 {
        "%Y%m%d-%H:%M:%S%.f"
    } else {
        "%Y%m%d-%H:%M:%S"
    };
    chrono::NaiveDateTime::parse_from_str(s, fmt)
        .ok()
        .map(|t| t.and_utc().timestamp_millis())
}

/// A decimal as FIX writes it (no exponent, no trailing zeros).
fn dec(d: Decimal) -> String {
    d.normalize().to_string()
}

impl Gateway {
    /// A gateway resuming from `state` (what the journal replayed).
    pub fn new(
        cfg: Config,
        instruments: Instruments,
        ids: IdAllocator,
        authenticate: Authenticate,
        state: State,
    ) -> Self {
        let cursor = state.cursor.clone();
        Gateway {
            cfg,
            instruments: instruments.clone(),
            ids,
            authenticate,
            state,
            conns: HashMap::new(),
            active: HashMap::new(),
            cursor,
            partitioner: Partitioner::new(&instruments),
            watermarks: HashMap::new(),
            records: Vec::new(),
            outputs: Vec::new(),
            stats: Stats::default(),
            stopping: false,
        }
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn stats(&self) -> Stats {
        Stats {
            sessions: self.active.len() as u64,
            ..self.stats
        }
    }

    /// Logs every session out (the gateway is stopping).
    pub fn shutdown(&mut self, now_ms: i64) {
        self.stopping = true;
        let active: Vec<(String, ConnId)> =
            self.active.iter().map(|(s, c)| (s.clone(), *c)).collect();
        for (s, c) in active {
            self.logout(
                c,
                Some(&s),
                "gateway shutting down; reconnect shortly",
                now_ms,
            );
            self.close(c);
        }
    }

    /// Sessions logged on now.
    pub fn sessions_logged_on(&self) -> usize {
        self.active.len()
    }

    /// Where to start reading `order-events` partition `p` (`None`: not read before).
    pub fn cursor(&self, partition: i32) -> Option<i64> {
        self.cursor.get(&partition).copied()
    }

    /// Starts reading a partition never read before at `next` (the end at first start: orders
    /// placed before the gateway existed are not its own).
    pub fn start_partition(&mut self, partition: i32, next: i64) {
        if !self.cursor.contains_key(&partition) {
            self.commit(Record::Cursor { partition, next });
            self.cursor.insert(partition, next);
        }
    }

    /// After a restart: every `orders` record the journal has but no acknowledgement of is
    /// looked for on the topic ([`Output::Verify`]) and published only if it is not there — so
    /// none is lost and none reaches the engine twice.
    pub fn verify_outbox(&mut self) {
        let verify = self
            .state
            .orders
            .iter()
            .flat_map(|(&id, o)| o.outbox.iter().map(move |p| Output::verify(id, p)));
        self.outputs.extend(verify);
    }

    /// Publications handed out and not yet acknowledged.
    pub fn outbox_len(&self) -> usize {
        self.state.orders.values().map(|o| o.outbox.len()).sum()
    }

    /// The records and outputs of the steps since the last call.
    pub fn take(&mut self) -> (Vec<Record>, Vec<Output>) {
        (
            std::mem::take(&mut self.records),
            std::mem::take(&mut self.outputs),
        )
    }

    fn commit(&mut self, r: Record) {
        self.state.apply(&r, self.cfg.resend_window);
        self.records.push(r);
    }

    /// Handles one input at time `now_ms`.
    pub fn handle(&mut self, input: Input, now_ms: i64) {
        match input {
            Input::Connected(c) => {
                self.conns.insert(
                    c,
                    Conn {
                        session: None,
                        opened_ms: now_ms,
                        heartbeat_ms: 30_000,
                        last_in_ms: now_ms,
                        last_out_ms: now_ms,
                        test_request_ms: None,
                        resend_until: None,
                        resend_asked_ms: 0,
                        logout_sent_ms: None,
                        closed: false,
                    },
                );
            }
            Input::Message(c, m) => {
                self.stats.messages_in += 1;
                if let Some(conn) = self.conns.get_mut(&c) {
                    conn.last_in_ms = now_ms;
                    conn.test_request_ms = None;
                }
                self.on_message(c, m, now_ms);
            }
            Input::Garbled(c, reason) => {
                // Ignored, no sequence number consumed (FIX 4.4 vol. 2, garbled messages).
                self.stats.garbled += 1;
                tracing::warn!(conn = c, %reason, "garbled FIX message ignored");
            }
            Input::Disconnected(c) => self.drop_conn(c),
            Input::Event {
                partition,
                offset,
                payload,
            } => self.on_event(partition, offset, &payload, now_ms),
            Input::Published {
                order_id,
                seq,
                result,
            } => self.on_published(order_id, seq, result),
            Input::Verified {
                order_id,
                seq,
                found,
            } => self.on_verified(order_id, seq, found),
            Input::Watermarks(w) => self.watermarks.extend(w),
            Input::Tick => self.on_tick(now_ms),
        }
    }

    fn drop_conn(&mut self, c: ConnId) {
        if let Some(conn) = self.conns.remove(&c) {
            if let Some(s) = conn.session {
                if self.active.get(&s) == Some(&c) {
                    self.active.remove(&s);
                    tracing::info!(session = %s, "FIX session disconnected");
                }
            }
        }
    }

    fn close(&mut self, c: ConnId) {
        if let Some(conn) = self.conns.get_mut(&c) {
            if !conn.closed {
                conn.closed = true;
                self.outputs.push(Output::Close(c));
            }
        }
        self.drop_conn(c);
    }

    // ---- sending ----------------------------------------------------------------------------

    /// Header + body for `session` with MsgSeqNum `seq`.
    fn frame(&self, session: &str, seq: u64, sending_time: &str, m: &Message) -> Message {
        Message::with_header(m, &self.cfg.comp_id, session, seq, sending_time)
    }

    fn write(&mut self, c: ConnId, m: &Message, now_ms: i64) {
        let mut bytes = Vec::with_capacity(256);
        m.encode(&mut bytes);
        if let Some(conn) = self.conns.get_mut(&c) {
            conn.last_out_ms = now_ms;
        }
        self.outputs.push(Output::Send(c, bytes));
    }

    /// Sends an admin message on connection `c` of `session` (not kept: resent as a gap fill).
    fn send_admin(&mut self, c: ConnId, session: &str, m: Message, now_ms: i64) {
        let seq = self.state.session(session).next_out;
        self.commit(Record::OutSeq {
            session: session.to_string(),
            next: seq + 1,
        });
        let framed = self.frame(session, seq, &utc_timestamp(now_ms), &m);
        self.write(c, &framed, now_ms);
    }

    /// An admin message to a connection without a session (logon refused): sequence number 1,
    /// nothing recorded.
    fn send_unsequenced(&mut self, c: ConnId, target: &str, m: Message, now_ms: i64) {
        let framed = self.frame(target, 1, &utc_timestamp(now_ms), &m);
        self.write(c, &framed, now_ms);
    }

    /// Sends (or queues, when `session` is not logged on) an application message; kept for
    /// resends.
    fn send_app(&mut self, session: &str, m: Message, now_ms: i64) {
        let seq = self.state.session(session).next_out;
        let sending_time = utc_timestamp(now_ms);
        let stored = Stored {
            seq,
            sending_time: sending_time.clone(),
            msg_type: m.msg_type().to_string(),
            body: m.fields()[1..].to_vec(),
        };
        self.commit(Record::Sent {
            session: session.to_string(),
            msg: stored,
        });
        if let Some(&c) = self.active.get(session) {
            let framed = self.frame(session, seq, &sending_time, &m);
            self.write(c, &framed, now_ms);
        }
    }

    /// A session-level Reject (35=3) of `m` on connection `c`.
    fn reject(
        &mut self,
        c: ConnId,
        m: &Message,
        reason: u32,
        tag: Option<u32>,
        text: &str,
        now_ms: i64,
    ) {
        let Some(session) = self.conns.get(&c).and_then(|x| x.session.clone()) else {
            return;
        };
        self.stats.session_rejects += 1;
        let mut r = Message::new("3");
        r.push(REF_SEQ_NUM, m.get(MSG_SEQ_NUM).unwrap_or("0"));
        if let Some(t) = tag {
            r.push(REF_TAG_ID, t.to_string());
        }
        if !m.msg_type().is_empty() {
            r.push(REF_MSG_TYPE, m.msg_type());
        }
        r.push(SESSION_REJECT_REASON, reason.to_string())
            .push(TEXT, text);
        self.send_admin(c, &session, r, now_ms);
    }

    fn logout(&mut self, c: ConnId, session: Option<&str>, text: &str, now_ms: i64) {
        let mut m = Message::new("5");
        m.push(TEXT, text);
        match session {
            Some(s) => self.send_admin(c, s, m, now_ms),
            None => self.send_unsequenced(c, "UNKNOWN", m, now_ms),
        }
        if let Some(conn) = self.conns.get_mut(&c) {
            conn.logout_sent_ms = Some(now_ms);
        }
    }

    // ---- the session layer --------------------------------------------------------------------

    fn on_message(&mut self, c: ConnId, m: Message, now_ms: i64) {
        let Some(conn) = self.conns.get(&c) else {
            return;
        };
        if conn.closed {
            return;
        }
        let Some(session) = conn.session.clone() else {
            return self.on_logon(c, m, now_ms);
        };
        // Header checks.
        if m.get(SENDER_COMP_ID) != Some(session.as_str())
            || m.get(TARGET_COMP_ID) != Some(self.cfg.comp_id.as_str())
        {
            self.reject(c, &m, 9, Some(SENDER_COMP_ID), "CompID problem", now_ms);
            self.logout(
                c,
                Some(&session),
                "SenderCompID/TargetCompID do not match the session",
                now_ms,
            );
            return self.close(c);
        }
        let Some(seq) = m.get_u64(MSG_SEQ_NUM) else {
            self.logout(
                c,
                Some(&session),
                "MsgSeqNum (34) missing or not a number",
                now_ms,
            );
            return self.close(c);
        };
        let expected = self.state.session(&session).next_in;
        let msg_type = m.msg_type().to_string();
        // SequenceReset in reset mode applies whatever its MsgSeqNum.
        if msg_type == "4" && !m.flag(GAP_FILL_FLAG) {
            return self.sequence_reset(c, &session, &m, expected, now_ms);
        }
        if seq > expected {
            match msg_type.as_str() {
                // Answered even while we wait for a gap to be filled.
                "2" => self.on_resend_request(c, &session, &m, now_ms),
                "5" => return self.on_logout(c, &session, now_ms),
                _ => {}
            }
            let asked = self.conns.get(&c).and_then(|x| x.resend_until);
            if asked.is_none() {
                self.ask_resend(c, &session, expected, seq, now_ms);
            }
            // Not processed now: it comes again in the resend.
            return;
        }
        if seq < expected {
            if m.flag(POSS_DUP_FLAG) {
                return; // already processed
            }
            self.logout(
                c,
                Some(&session),
                &format!("MsgSeqNum too low, expecting {expected} but received {seq}"),
                now_ms,
            );
            return self.close(c);
        }
        // seq == expected
        if let Some(p) = m.problem.clone() {
            // Consumed and answered: the same bytes would only come again.
            self.commit(Record::InSeq {
                session: session.clone(),
                next: expected + 1,
            });
            return self.reject(c, &m, p.reason, p.tag, &p.text, now_ms);
        }
        if let Err(text) = self.check_sending_time(&m, now_ms) {
            self.commit(Record::InSeq {
                session: session.clone(),
                next: expected + 1,
            });
            self.reject(c, &m, 10, Some(SENDING_TIME), &text, now_ms);
            self.logout(c, Some(&session), &text, now_ms);
            return self.close(c);
        }
        let next = if msg_type == "4" {
            // Gap fill: NewSeqNo is the next expected (never backwards).
            match m.get_u64(NEW_SEQ_NO) {
                Some(n) if n > expected => n,
                _ => {
                    self.commit(Record::InSeq {
                        session: session.clone(),
                        next: expected + 1,
                    });
                    return self.reject(
                        c,
                        &m,
                        5,
                        Some(NEW_SEQ_NO),
                        "NewSeqNo must move forward",
                        now_ms,
                    );
                }
            }
        } else {
            expected + 1
        };
        self.commit(Record::InSeq {
            session: session.clone(),
            next,
        });
        if let Some(conn) = self.conns.get_mut(&c) {
            if conn.resend_until.is_some_and(|u| next > u) {
                conn.resend_until = None;
            }
        }
        match msg_type.as_str() {
            "0" | "3" | "4" => {}
            "1" => {
                let mut h = Message::new("0");
                if let Some(id) = m.get(TEST_REQ_ID) {
                    h.push(TEST_REQ_ID, id);
                }
                self.send_admin(c, &session, h, now_ms);
            }
            "2" => self.on_resend_request(c, &session, &m, now_ms),
            "5" => self.on_logout(c, &session, now_ms),
            "A" => {
                self.logout(c, Some(&session), "already logged on", now_ms);
                self.close(c);
            }
            "D" => self.on_new_order(&session, &m, now_ms),
            "F" => self.on_cancel(&session, &m, false, now_ms),
            "G" => self.on_cancel(&session, &m, true, now_ms),
            other => {
                let mut r = Message::new("j");
                r.push(REF_SEQ_NUM, seq.to_string())
                    .push(REF_MSG_TYPE, other)
                    .push(BUSINESS_REJECT_REASON, "3")
                    .push(TEXT, format!("MsgType {other} is not supported"));
                self.send_app(&session, r, now_ms);
            }
        }
    }

    fn check_sending_time(&self, m: &Message, now_ms: i64) -> Result<(), String> {
        let t = m
            .get(SENDING_TIME)
            .and_then(parse_timestamp)
            .ok_or_else(|| "SendingTime (52) missing or malformed".to_string())?;
        if (t - now_ms).abs() > self.cfg.sending_time_tolerance_ms {
            return Err(format!(
                "SendingTime accuracy problem: {} ms from the gateway's clock",
                t - now_ms
            ));
        }
        Ok(())
    }

    fn on_logon(&mut self, c: ConnId, m: Message, now_ms: i64) {
        let refuse = |g: &mut Gateway, text: &str| {
            g.stats.logons_refused += 1;
            tracing::warn!(
                conn = c,
                sender = m.get(SENDER_COMP_ID).unwrap_or(""),
                reason = text,
                "FIX logon refused"
            );
            let mut out = Message::new("5");
            out.push(TEXT, text);
            g.send_unsequenced(c, m.get(SENDER_COMP_ID).unwrap_or("UNKNOWN"), out, now_ms);
            g.close(c);
        };
        if m.msg_type() != "A" {
            return refuse(self, "first message must be a Logon (35=A)");
        }
        if let Some(p) = &m.problem {
            return refuse(self, &format!("malformed Logon: {}", p.text));
        }
        if self.stopping {
            return refuse(self, "gateway shutting down; reconnect shortly");
        }
        if m.get(TARGET_COMP_ID) != Some(self.cfg.comp_id.as_str()) {
            return refuse(self, &format!("TargetCompID must be {}", self.cfg.comp_id));
        }
        let Some(sender) = m.get(SENDER_COMP_ID).map(str::to_string) else {
            return refuse(self, "SenderCompID (49) missing");
        };
        if let Some(u) = m.get(USERNAME) {
            if u != sender {
                return refuse(self, "Username (553) must be the SenderCompID");
            }
        }
        let trader = match m.get(PASSWORD).map(|p| (self.authenticate)(p)) {
            None => return refuse(self, "Password (554) missing: the trader's API key"),
            Some(Err(reason)) => return refuse(self, &format!("authentication failed: {reason}")),
            Some(Ok(t)) => t,
        };
        if trader != sender {
            return refuse(self, "the key does not belong to this SenderCompID");
        }
        let hb = m.get_u64(HEART_BT_INT).unwrap_or(0);
        if hb == 0 || hb > self.cfg.max_heartbeat_s {
            return refuse(
                self,
                &format!("HeartBtInt (108) must be 1-{}", self.cfg.max_heartbeat_s),
            );
        }
        if let Err(text) = self.check_sending_time(&m, now_ms) {
            return refuse(self, &text);
        }
        if self.active.contains_key(&sender) {
            // The established session is left alone.
            return refuse(self, "session already logged on");
        }
        if !self.state.sessions.contains_key(&sender)
            && self.state.sessions.len() >= self.cfg.max_sessions
        {
            return refuse(self, "the gateway serves no more sessions (--max-sessions)");
        }
        let Some(seq) = m.get_u64(MSG_SEQ_NUM) else {
            return refuse(self, "MsgSeqNum (34) missing");
        };
        let reset = m.flag(RESET_SEQ_NUM_FLAG);
        if reset {
            if seq != 1 {
                return refuse(self, "ResetSeqNumFlag=Y needs MsgSeqNum 1");
            }
            self.commit(Record::Reset {
                session: sender.clone(),
            });
        }
        let expected = self.state.session(&sender).next_in;
        if seq < expected {
            return refuse(
                self,
                &format!("MsgSeqNum too low, expecting {expected} but received {seq}"),
            );
        }
        // Logged on.
        self.stats.logons += 1;
        self.active.insert(sender.clone(), c);
        if let Some(conn) = self.conns.get_mut(&c) {
            conn.session = Some(sender.clone());
            conn.heartbeat_ms = hb as i64 * 1000;
        }
        if seq == expected {
            self.commit(Record::InSeq {
                session: sender.clone(),
                next: expected + 1,
            });
        }
        let mut a = Message::new("A");
        a.push(ENCRYPT_METHOD, "0")
            .push(HEART_BT_INT, hb.to_string());
        if reset {
            a.push(RESET_SEQ_NUM_FLAG, "Y");
        }
        self.send_admin(c, &sender, a, now_ms);
        tracing::info!(session = %sender, in_seq = seq, out_seq = self.state.session(&sender).next_out, "FIX session logged on");
        if seq > expected {
            self.ask_resend(c, &sender, expected, seq, now_ms);
        }
    }

    /// ResendRequest from `expected` on, remembering that everything up to `until` must come
    /// (asked again if it has not after a while: a lost request must not stall the session).
    fn ask_resend(&mut self, c: ConnId, session: &str, expected: u64, until: u64, now_ms: i64) {
        let mut r = Message::new("2");
        r.push(BEGIN_SEQ_NO, expected.to_string())
            .push(END_SEQ_NO, "0");
        self.send_admin(c, session, r, now_ms);
        if let Some(conn) = self.conns.get_mut(&c) {
            conn.resend_until = Some(conn.resend_until.unwrap_or(0).max(until));
            conn.resend_asked_ms = now_ms;
        }
    }

    fn on_logout(&mut self, c: ConnId, session: &str, now_ms: i64) {
        let answered = self
            .conns
            .get(&c)
            .is_some_and(|x| x.logout_sent_ms.is_some());
        if !answered {
            let m = Message::new("5");
            self.send_admin(c, session, m, now_ms);
        }
        self.close(c);
    }

    fn sequence_reset(
        &mut self,
        c: ConnId,
        session: &str,
        m: &Message,
        expected: u64,
        now_ms: i64,
    ) {
        match m.get_u64(NEW_SEQ_NO) {
            Some(n) if n >= expected => {
                self.commit(Record::InSeq {
                    session: session.to_string(),
                    next: n,
                });
                if let Some(conn) = self.conns.get_mut(&c) {
                    if conn.resend_until.is_some_and(|u| n > u) {
                        conn.resend_until = None;
                    }
                }
            }
            _ => self.reject(
                c,
                m,
                5,
                Some(NEW_SEQ_NO),
                "NewSeqNo may not go backwards",
                now_ms,
            ),
        }
    }

    fn on_resend_request(&mut self, c: ConnId, session: &str, m: &Message, now_ms: i64) {
        self.stats.resend_requests_answered += 1;
        let next_out = self.state.session(session).next_out;
        let begin = m.get_u64(BEGIN_SEQ_NO).unwrap_or(1).max(1);
        let end = match m.get_u64(END_SEQ_NO) {
            Some(0) | None => next_out - 1,
            Some(e) => e.min(next_out - 1),
        };
        if begin > end {
            return;
        }
        // Encoded straight from the kept messages into chunks of ≤ 1 MiB, each one send: a
        // resend of the whole window is a few dozen writes, not one queue entry per message.
        const CHUNK: usize = 1 << 20;
        let now = utc_timestamp(now_ms);
        let mut chunks: Vec<Vec<u8>> = vec![Vec::new()];
        let mut resent = 0u64;
        let mut seq = begin;
        {
            let sent = &self.state.sessions[session].sent;
            let first = sent.partition_point(|s| s.seq < begin);
            let emit = |m: &Message, chunks: &mut Vec<Vec<u8>>| {
                let last = chunks.last_mut().expect("one chunk");
                m.encode(last);
                if last.len() >= CHUNK {
                    chunks.push(Vec::new());
                }
            };
            for s in sent.range(first..).take_while(|s| s.seq <= end) {
                if s.seq > seq {
                    emit(&self.gap_fill(session, seq, s.seq, &now), &mut chunks);
                }
                let mut body = Message::new(&s.msg_type);
                for (t, v) in &s.body {
                    body.push(*t, v.clone());
                }
                let mut framed = self.frame(session, s.seq, &now, &body);
                framed.set_after_header(POSS_DUP_FLAG, "Y");
                framed.set_after_header(ORIG_SENDING_TIME, s.sending_time.clone());
                emit(&framed, &mut chunks);
                resent += 1;
                seq = s.seq + 1;
            }
            if seq <= end {
                emit(&self.gap_fill(session, seq, end + 1, &now), &mut chunks);
            }
        }
        self.stats.messages_resent += resent;
        if let Some(conn) = self.conns.get_mut(&c) {
            conn.last_out_ms = now_ms;
        }
        for chunk in chunks.into_iter().filter(|c| !c.is_empty()) {
            self.outputs.push(Output::Send(c, chunk));
        }
    }

    /// SequenceReset-GapFill at MsgSeqNum `from` to `to` (admin messages are not resent).
    fn gap_fill(&self, session: &str, from: u64, to: u64, now: &str) -> Message {
        let mut g = Message::new("4");
        g.push(GAP_FILL_FLAG, "Y").push(NEW_SEQ_NO, to.to_string());
        let mut framed = self.frame(session, from, now, &g);
        framed.set_after_header(POSS_DUP_FLAG, "Y");
        framed.set_after_header(ORIG_SENDING_TIME, now);
        framed
    }

    fn on_tick(&mut self, now_ms: i64) {
        let mut heartbeats = Vec::new();
        let mut tests = Vec::new();
        let mut closes = Vec::new();
        for (&c, conn) in &self.conns {
            if conn.closed {
                continue;
            }
            match (&conn.session, conn.logout_sent_ms) {
                (_, Some(t)) if now_ms - t > 2_000 => closes.push(c),
                (None, _) if now_ms - conn.opened_ms > self.cfg.logon_timeout_ms => closes.push(c),
                (Some(s), None) => {
                    let hb = conn.heartbeat_ms;
                    match conn.test_request_ms {
                        Some(t) if now_ms - t > hb => closes.push(c),
                        None if now_ms - conn.last_in_ms > hb + hb / 5 => {
                            tests.push((c, s.clone()))
                        }
                        _ => {}
                    }
                    if now_ms - conn.last_out_ms >= hb {
                        heartbeats.push((c, s.clone()));
                    }
                }
                _ => {}
            }
        }
        for (c, s) in heartbeats {
            self.send_admin(c, &s, Message::new("0"), now_ms);
        }
        let stalled: Vec<(ConnId, String, u64)> = self
            .conns
            .iter()
            .filter(|(_, x)| !x.closed && x.logout_sent_ms.is_none())
            .filter(|(_, x)| {
                x.resend_until.is_some() && now_ms - x.resend_asked_ms > x.heartbeat_ms.max(10_000)
            })
            .filter_map(|(&c, x)| Some((c, x.session.clone()?, x.resend_until?)))
            .collect();
        for (c, s, until) in stalled {
            let expected = self.state.session(&s).next_in;
            tracing::warn!(session = %s, expected, "a requested resend has not come; asking again");
            self.ask_resend(c, &s, expected, until, now_ms);
        }
        for (c, s) in tests {
            let mut t = Message::new("1");
            t.push(TEST_REQ_ID, format!("TEST-{now_ms}"));
            self.send_admin(c, &s, t, now_ms);
            if let Some(conn) = self.conns.get_mut(&c) {
                conn.test_request_ms = Some(now_ms);
            }
        }
        for c in closes {
            tracing::warn!(
                conn = c,
                "FIX connection closed: no logon, no answer or no logout"
            );
            self.close(c);
        }
        // The read position moves on in the journal now and then even without our events.
        let moved: Vec<(i32, i64)> = self
            .cursor
            .iter()
            .filter(|(p, n)| self.state.cursor.get(p) != Some(n))
            .map(|(p, n)| (*p, *n))
            .collect();
        for (partition, next) in moved {
            self.commit(Record::Cursor { partition, next });
        }
    }

    // ---- orders in ----------------------------------------------------------------------------

    /// Adds an `orders` record to `data`'s outbox (committed by the caller with `data`), and
    /// returns the output that publishes it once the record is journaled.
    fn queue(&self, id: u64, data: &mut OrderData, key: String, payload: Vec<u8>) -> Output {
        let partition = self
            .partitioner
            .partition(key.as_bytes(), self.cfg.order_partitions);
        let p = super::state::Publication {
            seq: data.publications,
            partition,
            scan_from: self.watermarks.get(&partition).copied().unwrap_or(0),
            key,
            payload,
        };
        data.publications += 1;
        let publish = Output::publish(id, &p);
        data.outbox.push(p);
        publish
    }

    /// Publication `seq` of order `id`, if it is still unacknowledged.
    fn publication(&self, id: u64, seq: u32) -> Option<&super::state::Publication> {
        self.state
            .orders
            .get(&id)
            .and_then(|o| o.outbox.iter().find(|p| p.seq == seq))
    }

    /// Publication `seq` of order `id` is on the topic: out of its outbox.
    fn delivered(&mut self, id: u64, seq: u32) {
        let Some(o) = self.state.orders.get(&id) else {
            return;
        };
        if !o.outbox.iter().any(|p| p.seq == seq) {
            return;
        }
        self.stats.orders_published += 1;
        let mut data = o.clone();
        data.outbox.retain(|p| p.seq != seq);
        self.store_order(id, data);
    }

    fn on_published(&mut self, id: u64, seq: u32, result: Result<(), String>) {
        match result {
            Ok(()) => self.delivered(id, seq),
            Err(e) => {
                // Lost or not? Looked for on the topic before anything is sent again.
                tracing::warn!(order_id = id, seq, error = %e, "publishing an order failed; checking the topic");
                if let Some(verify) = self.publication(id, seq).map(|p| Output::verify(id, p)) {
                    self.outputs.push(verify);
                }
            }
        }
    }

    fn on_verified(&mut self, id: u64, seq: u32, found: bool) {
        if found {
            return self.delivered(id, seq);
        }
        if let Some(publish) = self.publication(id, seq).map(|p| Output::publish(id, p)) {
            self.outputs.push(publish);
        }
    }

    /// Commits `data` for order `id`, or forgets the order once it is finished with nothing in
    /// flight (no change pending, nothing unacknowledged).
    fn store_order(&mut self, id: u64, data: OrderData) {
        if data.finished() && data.pending.is_none() && data.outbox.is_empty() {
            self.commit(Record::Forget {
                id,
                final_status: data.status,
            });
        } else {
            self.commit(Record::Order {
                id,
                data: Box::new(data),
            });
        }
    }

    /// An ExecutionReport refusing a new order the gateway did not publish.
    fn refuse_new(
        &mut self,
        session: &str,
        m: &Message,
        order_id: Option<u64>,
        reason: &str,
        text: &str,
        now_ms: i64,
    ) {
        self.stats.orders_refused += 1;
        let mut r = Message::new("8");
        r.push(
            ORDER_ID,
            order_id.map_or("NONE".to_string(), |i| i.to_string()),
        )
        .push(CL_ORD_ID, m.get(CL_ORD_ID).unwrap_or("NONE"))
        .push(EXEC_ID, format!("{}-0", order_id.unwrap_or(0)))
        .push(EXEC_TYPE, "8")
        .push(ORD_STATUS, "8")
        .push(SYMBOL, m.get(SYMBOL).unwrap_or("NONE"))
        .push(SIDE, m.get(SIDE).unwrap_or("1"))
        .push(LEAVES_QTY, "0")
        .push(CUM_QTY, "0")
        .push(AVG_PX, "0")
        .push(ORD_REJ_REASON, ord_rej_reason(reason))
        .push(TEXT, format!("{reason}: {text}"));
        if let Some(q) = m.get(ORDER_QTY) {
            r.push(ORDER_QTY, q);
        }
        self.stats.execution_reports += 1;
        self.send_app(session, r, now_ms);
    }

    fn on_new_order(&mut self, session: &str, m: &Message, now_ms: i64) {
        let Some(cl) = m.get(CL_ORD_ID).map(str::to_string) else {
            return self.refuse_new(
                session,
                m,
                None,
                "invalid_client_order_id",
                "ClOrdID (11) missing",
                now_ms,
            );
        };
        if !valid_cl_ord_id(&cl) {
            return self.refuse_new(
                session,
                m,
                None,
                "invalid_client_order_id",
                "ClOrdID must be 1-64 characters of A-Z a-z 0-9 . _ : -",
                now_ms,
            );
        }
        let epoch = self.state.session(session).epoch;
        let order_id = self
            .ids
            .for_client_order(session, &format!("fix:{epoch}:{cl}"));
        if self.state.session(session).cl_ord_ids.contains_key(&cl) {
            return self.refuse_new(
                session,
                m,
                Some(order_id),
                "duplicate_client_order_id",
                "ClOrdID already used in this session",
                now_ms,
            );
        }
        if self.state.session(session).cl_ord_ids.len() >= self.cfg.max_orders_per_session {
            return self.refuse_new(session, m, Some(order_id), "session_order_limit", "this session's ClOrdID table is full; log on with ResetSeqNumFlag=Y to start a new session", now_ms);
        }
        let refuse_terms = |g: &mut Gateway, text: &str| {
            let r = ClOrdRef {
                order_id,
                final_status: Some('8'),
            };
            g.commit(Record::ClOrdId {
                session: session.to_string(),
                cl_ord_id: cl.clone(),
                reference: r,
            });
            g.refuse_new(session, m, Some(order_id), "invalid_field", text, now_ms);
        };
        let side = match m.get(SIDE) {
            Some("1") => ("BUY", '1'),
            Some("2") => ("SELL", '2'),
            _ => return refuse_terms(self, "Side (54) must be 1 (buy) or 2 (sell)"),
        };
        let ord_type = match m.get(ORD_TYPE) {
            Some("1") => ("MARKET", '1'),
            Some("2") => ("LIMIT", '2'),
            _ => return refuse_terms(self, "OrdType (40) must be 1 (market) or 2 (limit)"),
        };
        let tif = match m.get(TIME_IN_FORCE) {
            None | Some("1") => ("GTC", '1'),
            Some("3") => ("IOC", '3'),
            Some("4") => ("FOK", '4'),
            Some("0") => return refuse_terms(self, "TimeInForce 0 (Day) is not offered: the exchange has no session close; use 1 (GTC)"),
            Some(_) => return refuse_terms(self, "TimeInForce (59) must be 1 (GTC), 3 (IOC) or 4 (FOK)"),
        };
        let post_only = m
            .get(EXEC_INST)
            .is_some_and(|e| e.split(' ').any(|i| i == "6"));
        let qty = match m.get(ORDER_QTY).and_then(|q| Decimal::from_str(q).ok()) {
            Some(q) => q,
            None => return refuse_terms(self, "OrderQty (38) missing or not a number"),
        };
        let price = match m.get(PRICE) {
            None => None,
            Some(p) => match Decimal::from_str(p) {
                Ok(p) => Some(p),
                Err(_) => return refuse_terms(self, "Price (44) is not a number"),
            },
        };
        let Some(symbol) = m.get(SYMBOL).map(str::to_string) else {
            return refuse_terms(self, "Symbol (55) missing");
        };
        let message = OrderMessage {
            action: None,
            id: order_id,
            instrument: symbol.clone(),
            trxn_type: Some(side.0.into()),
            quantity: Some(qty),
            total_quantity: None,
            price,
            order_timestamp: None,
            trader: Some(session.to_string()),
            order_type: Some(ord_type.0.into()),
            time_in_force: Some(tif.0.into()),
            post_only: post_only.then_some(true),
        };
        let prepared = match prepare(&message, &self.instruments, now_ms) {
            Ok(p) => p,
            Err(Refused { reason, detail }) => {
                let r = ClOrdRef {
                    order_id,
                    final_status: Some('8'),
                };
                self.commit(Record::ClOrdId {
                    session: session.to_string(),
                    cl_ord_id: cl.clone(),
                    reference: r,
                });
                return self.refuse_new(session, m, Some(order_id), &reason, &detail, now_ms);
            }
        };
        self.commit(Record::ClOrdId {
            session: session.to_string(),
            cl_ord_id: cl.clone(),
            reference: ClOrdRef {
                order_id,
                final_status: None,
            },
        });
        let data = OrderData {
            session: session.to_string(),
            instrument: symbol,
            side: side.1,
            ord_type: ord_type.1,
            tif: tif.1,
            order_qty: qty,
            price,
            cl_ord_id: cl.clone(),
            orig_cl_ord_id: None,
            pending: None,
            cl_ord_ids: vec![cl],
            cum_qty: Decimal::ZERO,
            leaves_qty: qty,
            notional: Decimal::ZERO,
            status: 'A',
            execs: 0,
            outbox: Vec::new(),
            publications: 0,
        };
        let mut data = data;
        let publish = self.queue(order_id, &mut data, prepared.key, prepared.payload);
        self.commit(Record::Order {
            id: order_id,
            data: Box::new(data),
        });
        self.outputs.push(publish);
    }

    /// OrderCancelReject (35=9) answering the cancel or replace `r`.
    fn cancel_reject(
        &mut self,
        r: &CancelRef<'_>,
        status: char,
        reason: &str,
        text: &str,
        now_ms: i64,
    ) {
        self.stats.cancel_rejects += 1;
        let mut m = Message::new("9");
        m.push(
            ORDER_ID,
            r.order_id.map_or("NONE".to_string(), |i| i.to_string()),
        )
        .push(CL_ORD_ID, r.cl)
        .push(ORIG_CL_ORD_ID, r.orig)
        .push(ORD_STATUS, status.to_string())
        .push(CXL_REJ_RESPONSE_TO, if r.replace { "2" } else { "1" })
        .push(CXL_REJ_REASON, cxl_rej_reason(reason))
        .push(TEXT, format!("{reason}: {text}"));
        self.send_app(r.session, m, now_ms);
    }

    fn on_cancel(&mut self, session: &str, m: &Message, replace: bool, now_ms: i64) {
        let cl = m.get(CL_ORD_ID).unwrap_or("NONE").to_string();
        let orig = m.get(ORIG_CL_ORD_ID).unwrap_or("NONE").to_string();
        let unknown = CancelRef {
            session,
            order_id: None,
            cl: &cl,
            orig: &orig,
            replace,
        };
        if !valid_cl_ord_id(&cl) {
            return self.cancel_reject(
                &unknown,
                '8',
                "invalid_client_order_id",
                "ClOrdID (11) missing or not 1-64 characters of A-Z a-z 0-9 . _ : -",
                now_ms,
            );
        }
        if self.state.session(session).cl_ord_ids.contains_key(&cl) {
            return self.cancel_reject(
                &unknown,
                '8',
                "duplicate_client_order_id",
                "ClOrdID already used in this session",
                now_ms,
            );
        }
        if self.state.session(session).cl_ord_ids.len() >= self.cfg.max_orders_per_session {
            return self.cancel_reject(
                &unknown,
                '8',
                "session_order_limit",
                "this session's ClOrdID table is full; log on with ResetSeqNumFlag=Y to start a new session",
                now_ms,
            );
        }
        let target = self.state.session(session).cl_ord_ids.get(&orig).cloned();
        let Some(target) = target else {
            return self.cancel_reject(
                &unknown,
                '8',
                "unknown_order",
                "no order with this OrigClOrdID (41) in this session",
                now_ms,
            );
        };
        let order_id = target.order_id;
        let known = CancelRef {
            order_id: Some(order_id),
            ..unknown
        };
        let take = |g: &mut Gateway, status| {
            g.commit(Record::ClOrdId {
                session: session.to_string(),
                cl_ord_id: cl.clone(),
                reference: ClOrdRef {
                    order_id,
                    final_status: status,
                },
            });
        };
        if let Some(status) = target.final_status {
            take(self, Some(status));
            return self.cancel_reject(
                &known,
                status,
                "order_not_active",
                "the order is finished",
                now_ms,
            );
        }
        let Some(order) = self.state.orders.get(&order_id).cloned() else {
            take(self, Some('8'));
            return self.cancel_reject(&known, '8', "unknown_order", "order not found", now_ms);
        };
        if order.pending.is_some() {
            take(self, Some(order.status));
            return self.cancel_reject(
                &known,
                order.status,
                "change_pending",
                "a cancel or replace of this order is already in flight",
                now_ms,
            );
        }
        if m.get(SYMBOL).is_some_and(|s| s != order.instrument)
            || m.get(SIDE).is_some_and(|s| !s.starts_with(order.side))
        {
            take(self, Some(order.status));
            return self.cancel_reject(
                &known,
                order.status,
                "instrument_mismatch",
                "Symbol (55) or Side (54) differs from the order's",
                now_ms,
            );
        }
        let mut message = OrderMessage {
            action: Some(if replace { "AMEND" } else { "CANCEL" }.into()),
            id: order_id,
            instrument: order.instrument.clone(),
            trxn_type: None,
            quantity: None,
            total_quantity: None,
            price: None,
            order_timestamp: None,
            trader: Some(session.to_string()),
            order_type: None,
            time_in_force: None,
            post_only: None,
        };
        if replace {
            // FIX OrderQty is the order's new total; the engine amends the open quantity.
            let qty = m.get(ORDER_QTY).and_then(|q| Decimal::from_str(q).ok());
            let price = m.get(PRICE).and_then(|p| Decimal::from_str(p).ok());
            if m.get(PRICE).is_some() && price.is_none()
                || m.get(ORDER_QTY).is_some() && qty.is_none()
            {
                take(self, Some(order.status));
                return self.cancel_reject(
                    &known,
                    order.status,
                    "invalid_field",
                    "OrderQty (38) or Price (44) is not a number",
                    now_ms,
                );
            }
            if let Some(q) = qty {
                if q <= order.cum_qty {
                    take(self, Some(order.status));
                    return self.cancel_reject(
                        &known,
                        order.status,
                        "quantity_not_positive",
                        "OrderQty must exceed the quantity already filled",
                        now_ms,
                    );
                }
                if q != order.order_qty {
                    // The new total: the engine leaves total − filled open, with the fills it
                    // knows (a fill on its way to us cannot make the order larger than asked).
                    message.total_quantity = Some(q);
                }
            }
            if price != order.price {
                message.price = price;
            }
            if message.total_quantity.is_none() && message.price.is_none() {
                take(self, Some(order.status));
                return self.cancel_reject(
                    &known,
                    order.status,
                    "nothing_to_change",
                    "OrderQty and Price are the order's",
                    now_ms,
                );
            }
        }
        let prepared = match prepare(&message, &self.instruments, now_ms) {
            Ok(p) => p,
            Err(Refused { reason, detail }) => {
                take(self, Some(order.status));
                return self.cancel_reject(&known, order.status, &reason, &detail, now_ms);
            }
        };
        take(self, None);
        let mut data = order;
        data.pending = Some(Pending {
            cl_ord_id: cl.clone(),
            replace,
        });
        data.cl_ord_ids.push(cl);
        // Queued behind the order's earlier records (a cancel never overtakes its order).
        let publish = self.queue(order_id, &mut data, prepared.key, prepared.payload);
        self.commit(Record::Order {
            id: order_id,
            data: Box::new(data),
        });
        self.outputs.push(publish);
    }

    // ---- execution reports out -------------------------------------------------------------

    fn on_event(&mut self, partition: i32, offset: i64, payload: &[u8], now_ms: i64) {
        if self.cursor.get(&partition).is_some_and(|&n| offset < n) {
            return; // read before (a restart re-reads from the journaled cursor)
        }
        self.stats.events_read += 1;
        self.cursor.insert(partition, offset + 1);
        // Cheap test first: most events are other traders' orders.
        let Ok(ev) = serde_json::from_slice::<OrderEventMessage>(payload) else {
            return;
        };
        let Some(order) = self.state.orders.get(&ev.order_id).cloned() else {
            return;
        };
        if order.session != ev.trader {
            return;
        }
        let before = self.records.len();
        self.apply_event(ev.order_id, order, &ev, now_ms);
        if self.records.len() > before {
            self.commit(Record::Cursor {
                partition,
                next: offset + 1,
            });
        }
    }

    fn report(&mut self, id: u64, o: &mut OrderData, e: Exec<'_>, now_ms: i64) {
        let Exec {
            exec_type,
            status,
            cl,
            orig,
            last,
            text,
        } = e;
        o.execs += 1;
        o.status = status;
        let avg = if o.cum_qty.is_zero() {
            Decimal::ZERO
        } else {
            money(o.notional / o.cum_qty)
        };
        let mut r = Message::new("8");
        r.push(ORDER_ID, id.to_string()).push(CL_ORD_ID, cl);
        if let Some(orig) = orig {
            r.push(ORIG_CL_ORD_ID, orig);
        }
        r.push(EXEC_ID, format!("{id}-{}", o.execs))
            .push(EXEC_TYPE, exec_type.to_string())
            .push(ORD_STATUS, status.to_string())
            .push(SYMBOL, o.instrument.clone())
            .push(SIDE, o.side.to_string())
            .push(ORD_TYPE, o.ord_type.to_string())
            .push(TIME_IN_FORCE, o.tif.to_string())
            .push(ORDER_QTY, dec(o.order_qty));
        if let Some(p) = o.price {
            r.push(PRICE, dec(p));
        }
        if let Some((px, qty)) = last {
            r.push(LAST_QTY, dec(qty)).push(LAST_PX, dec(px));
        }
        r.push(LEAVES_QTY, dec(o.leaves_qty))
            .push(CUM_QTY, dec(o.cum_qty))
            .push(AVG_PX, dec(avg))
            .push(TRANSACT_TIME, utc_timestamp(now_ms));
        if let Some(t) = text {
            r.push(TEXT, t);
            if exec_type == '8' {
                r.push(ORD_REJ_REASON, ord_rej_reason(t));
            }
        }
        self.stats.execution_reports += 1;
        let session = o.session.clone();
        self.send_app(&session, r, now_ms);
    }

    fn apply_event(&mut self, id: u64, mut o: OrderData, ev: &OrderEventMessage, now_ms: i64) {
        let cl = o.cl_ord_id.clone();
        let acked = o.status != 'A';
        let ack = |g: &mut Gateway, o: &mut OrderData| {
            if o.status == 'A' {
                o.leaves_qty = o.order_qty;
                g.report(
                    id,
                    o,
                    Exec {
                        exec_type: '0',
                        status: '0',
                        cl: &cl,
                        orig: None,
                        last: None,
                        text: None,
                    },
                    now_ms,
                );
            }
        };
        match ev.status.as_str() {
            "REJECTED" => {
                let command = ev.command.as_deref().unwrap_or("NEW");
                let reason = ev.reason.clone().unwrap_or_default();
                if command == "NEW" {
                    if acked {
                        // Not ours to report: the order's status stands (a copy of the order
                        // sent by someone else with its id).
                        return;
                    }
                    o.leaves_qty = Decimal::ZERO;
                    self.report(
                        id,
                        &mut o,
                        Exec {
                            exec_type: '8',
                            status: '8',
                            cl: &cl,
                            orig: None,
                            last: None,
                            text: Some(&reason),
                        },
                        now_ms,
                    );
                } else {
                    // The answer to the change in flight only if it is of the same kind.
                    let Some(p) = o.pending.take_if(|p| p.replace == (command == "AMEND")) else {
                        return;
                    };
                    let status = if acked { o.status } else { '0' };
                    self.cancel_reject(
                        &CancelRef {
                            session: &o.session.clone(),
                            order_id: Some(id),
                            cl: &p.cl_ord_id,
                            orig: &cl,
                            replace: p.replace,
                        },
                        status,
                        &reason,
                        "refused by the matching engine",
                        now_ms,
                    );
                }
            }
            "ACCEPTED" | "NEW" => ack(self, &mut o),
            "PARTIALLY_FILLED" | "FILLED" => {
                let filled = ev.filled.unwrap_or_default();
                if filled <= o.cum_qty {
                    return; // seen before
                }
                ack(self, &mut o);
                let qty = ev.last_quantity.unwrap_or(filled - o.cum_qty);
                let px = ev.last_price.or(ev.price).unwrap_or_default();
                o.cum_qty = filled;
                o.notional += px * qty;
                o.leaves_qty = ev.leaves.unwrap_or_default();
                if let Some(q) = ev.quantity {
                    o.order_qty = q;
                }
                let status = if ev.status == "FILLED" { '2' } else { '1' };
                self.report(
                    id,
                    &mut o,
                    Exec {
                        exec_type: 'F',
                        status,
                        cl: &cl,
                        orig: None,
                        last: Some((px, qty)),
                        text: None,
                    },
                    now_ms,
                );
            }
            "AMENDED" => {
                ack(self, &mut o);
                o.price = ev.price.or(o.price);
                if let Some(q) = ev.quantity {
                    o.order_qty = q;
                }
                o.leaves_qty = ev.leaves.unwrap_or(o.leaves_qty);
                let status = if o.cum_qty.is_zero() { '0' } else { '1' };
                match o.pending.take() {
                    Some(p) if p.replace => {
                        o.orig_cl_ord_id = Some(cl.clone());
                        o.cl_ord_id = p.cl_ord_id.clone();
                        self.report(
                            id,
                            &mut o,
                            Exec {
                                exec_type: '5',
                                status,
                                cl: &p.cl_ord_id,
                                orig: Some(&cl),
                                last: None,
                                text: None,
                            },
                            now_ms,
                        );
                    }
                    other => {
                        o.pending = other;
                        self.report(
                            id,
                            &mut o,
                            Exec {
                                exec_type: '5',
                                status,
                                cl: &cl,
                                orig: None,
                                last: None,
                                text: None,
                            },
                            now_ms,
                        );
                    }
                }
            }
            "CANCELLED" => {
                if o.finished() {
                    return;
                }
                ack(self, &mut o);
                o.leaves_qty = Decimal::ZERO;
                let reason = ev.reason.clone().unwrap_or_default();
                let requested = reason == "requested";
                match o.pending.take() {
                    Some(p) if !p.replace && requested => {
                        o.orig_cl_ord_id = Some(cl.clone());
                        o.cl_ord_id = p.cl_ord_id.clone();
                        self.report(
                            id,
                            &mut o,
                            Exec {
                                exec_type: '4',
                                status: '4',
                                cl: &p.cl_ord_id,
                                orig: Some(&cl),
                                last: None,
                                text: None,
                            },
                            now_ms,
                        );
                    }
                    other => {
                        // Cancelled for another reason (IOC remainder, self-trade…) or from
                        // elsewhere; a replace in flight is refused by the engine later.
                        o.pending = other;
                        let text = (!requested).then_some(reason.as_str());
                        self.report(
                            id,
                            &mut o,
                            Exec {
                                exec_type: '4',
                                status: '4',
                                cl: &cl,
                                orig: None,
                                last: None,
                                text,
                            },
                            now_ms,
                        );
                    }
                }
            }
            _ => return,
        }
        self.store_order(id, o);
    }
}

/// The HTTP API's rule for client order ids (1–64 characters of `A-Z a-z 0-9 . _ : -`).
fn valid_cl_ord_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= crate::serving::orders::MAX_CLIENT_ORDER_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// OrdRejReason (103) for a reason code.
fn ord_rej_reason(reason: &str) -> &'static str {
    match reason {
        "unknown_instrument" => "1",
        "duplicate_order_id" | "duplicate_client_order_id" => "6",
        "quantity_too_large" => "3",
        "price_off_tick"
        | "quantity_off_lot"
        | "price_not_positive"
        | "quantity_not_positive"
        | "price_too_large" => "99",
        _ => "99",
    }
}

/// CxlRejReason (102) for a reason code.
fn cxl_rej_reason(reason: &str) -> &'static str {
    match reason {
        "order_not_active" => "0",
        "unknown_order" => "1",
        "change_pending" => "3",
        "duplicate_client_order_id" => "6",
        _ => "99",
    }
}
