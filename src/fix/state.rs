//! What the gateway must remember across a restart, and the only ways it changes.
//!
//! The gateway never mutates [`State`] directly: it builds a [`Record`] and commits it (apply +
//! journal). Replaying the journal's records from the last snapshot therefore rebuilds the state
//! the crashed process had, field for field — the same discipline as the engine's snapshot + tail.
//!
//! Bounds (documented with the pod's memory limit in `k8s/fix-gateway.yaml`):
//! - per session, the last `resend_window` application messages (≈ 400 B each);
//! - per session, the ClOrdIDs used since its last sequence reset, at most
//!   `max_orders_per_session` (≈ 100 B each; beyond it new orders are refused until a reset);
//! - the gateway's open orders and those with a cancel/replace in flight (≈ 400 B each) —
//!   finished orders keep only their ClOrdID entries.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// The persistent state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Sessions by the trader's CompID.
    pub sessions: BTreeMap<String, SessionData>,
    /// Orders placed through the gateway that are open or have a change in flight.
    pub orders: BTreeMap<u64, OrderData>,
    /// Next `order-events` offset to read, per partition.
    pub cursor: BTreeMap<i32, i64>,
}

/// One FIX session's persistent part.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionData {
    /// MsgSeqNum expected from the trader.
    pub next_in: u64,
    /// MsgSeqNum of our next message.
    pub next_out: u64,
    /// Application messages sent (or queued while disconnected), oldest first, for resends.
    pub sent: VecDeque<Stored>,
    /// ClOrdIDs used since the last sequence reset.
    pub cl_ord_ids: BTreeMap<String, ClOrdRef>,
    /// Sequence resets so far: part of what order ids are derived from, so a ClOrdID used again
    /// after a reset (a counter restarting each day) is a new order, not a duplicate id.
    pub epoch: u32,
}

impl Default for SessionData {
    fn default() -> Self {
        SessionData {
            next_in: 1,
            next_out: 1,
            sent: VecDeque::new(),
            cl_ord_ids: BTreeMap::new(),
            epoch: 0,
        }
    }
}

/// An application message as sent: sequence number, SendingTime and the body after the header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    pub seq: u64,
    pub sending_time: String,
    pub msg_type: String,
    pub body: Vec<(u32, String)>,
}

/// What a ClOrdID refers to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClOrdRef {
    pub order_id: u64,
    /// OrdStatus (39) once the order is finished and forgotten; `None` while it is in `orders`.
    pub final_status: Option<char>,
}

/// A change asked for and not yet answered by the engine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub cl_ord_id: String,
    /// `true`: OrderCancelReplaceRequest; `false`: OrderCancelRequest.
    pub replace: bool,
}

/// An order placed through the gateway.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderData {
    pub session: String,
    pub instrument: String,
    /// Side (54): '1' buy, '2' sell.
    pub side: char,
    /// OrdType (40): '1' market, '2' limit.
    pub ord_type: char,
    /// TimeInForce (59).
    pub tif: char,
    /// OrderQty (38): total quantity (filled + open).
    pub order_qty: Decimal,
    pub price: Option<Decimal>,
    pub cl_ord_id: String,
    pub orig_cl_ord_id: Option<String>,
    pub pending: Option<Pending>,
    /// Every ClOrdID that refers to this order (the new order's, each cancel's and replace's).
    pub cl_ord_ids: Vec<String>,
    pub cum_qty: Decimal,
    pub leaves_qty: Decimal,
    /// Σ LastPx × LastQty, for AvgPx.
    pub notional: Decimal,
    /// OrdStatus (39) last reported; 'A' (pending new) before the engine's first word.
    pub status: char,
    /// Execution reports sent for this order (ExecIDs are `order id`-`n`).
    pub execs: u32,
    /// `orders` records of this order (the new order, each cancel and replace) not yet
    /// acknowledged by the broker, in publication order.
    pub outbox: Vec<Publication>,
    /// Publications made so far (the next one's number).
    pub publications: u32,
}

/// One `orders` record to deliver exactly once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publication {
    /// Its number among the order's publications (acknowledgements name it).
    pub seq: u32,
    /// The `orders` partition, and an offset at or below where it lands: the partition's end
    /// as last seen before the record was made. Whether a record whose acknowledgement was lost
    /// (a crash, a delivery error) reached the broker is decided by reading from there.
    pub partition: i32,
    pub scan_from: i64,
    pub key: String,
    pub payload: Vec<u8>,
}

impl OrderData {
    pub fn finished(&self) -> bool {
        matches!(self.status, '2' | '4' | '8')
    }
}

/// Every way [`State`] changes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Record {
    /// The whole state (the first record after a compaction).
    Snapshot(Box<State>),
    /// MsgSeqNum expected next from `session`.
    InSeq { session: String, next: u64 },
    /// Our next MsgSeqNum for `session` (after an admin message, which is not kept).
    OutSeq { session: String, next: u64 },
    /// An application message sent or queued; our next MsgSeqNum becomes `seq + 1`.
    Sent { session: String, msg: Stored },
    /// Sequence numbers back to 1 (ResetSeqNumFlag): kept messages and ClOrdIDs of finished
    /// orders are dropped.
    Reset { session: String },
    /// A ClOrdID taken by `session`.
    ClOrdId {
        session: String,
        cl_ord_id: String,
        reference: ClOrdRef,
    },
    /// An order's new state.
    Order { id: u64, data: Box<OrderData> },
    /// A finished order forgotten (its ClOrdIDs keep its final status).
    Forget { id: u64, final_status: char },
    /// Next `order-events` offset of `partition`.
    Cursor { partition: i32, next: i64 },
}

impl State {
    /// Applies `r`; `resend_window` bounds the messages kept per session.
    pub fn apply(&mut self, r: &Record, resend_window: usize) {
        match r {
            Record::Snapshot(s) => *self = (**s).clone(),
            Record::InSeq { session, next } => self.session(session).next_in = *next,
            Record::OutSeq { session, next } => self.session(session).next_out = *next,
            Record::Sent { session, msg } => {
                let s = self.session(session);
                s.next_out = msg.seq + 1;
                s.sent.push_back(msg.clone());
                while s.sent.len() > resend_window {
                    s.sent.pop_front();
                }
            }
            Record::Reset { session } => {
                let s = self.session(session);
                s.next_in = 1;
                s.next_out = 1;
                s.sent.clear();
                s.cl_ord_ids.retain(|_, r| r.final_status.is_none());
                s.epoch += 1;
            }
            Record::ClOrdId {
                session,
                cl_ord_id,
                reference,
            } => {
                self.session(session)
                    .cl_ord_ids
                    .insert(cl_ord_id.clone(), reference.clone());
            }
            Record::Order { id, data } => {
                self.orders.insert(*id, (**data).clone());
            }
            Record::Forget { id, final_status } => {
                if let Some(o) = self.orders.remove(id) {
                    if let Some(s) = self.sessions.get_mut(&o.session) {
                        for c in &o.cl_ord_ids {
                            if let Some(r) = s.cl_ord_ids.get_mut(c) {
                                r.final_status = Some(*final_status);
                            }
                        }
                    }
                }
            }
            Record::Cursor { partition, next } => {
                self.cursor.insert(*partition, *next);
            }
        }
    }

    /// The session `comp_id`, created on first use.
    pub fn session(&mut self, comp_id: &str) -> &mut SessionData {
        self.sessions.entry(comp_id.to_string()).or_default()
    }
}
