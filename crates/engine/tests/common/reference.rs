//! A deliberately simple reference matching engine, for differential tests.
//!
//! All resting orders of all books sit in one flat `Vec`. The next order to match against is
//! found by scanning the whole vector for the best price and, among equal prices, the lowest
//! priority number. FOK is decided by trial-matching on a clone. Nothing is clever, so it is easy
//! to see that it follows the rules; the real [`Engine`](kappa_engine::Engine) must produce
//! exactly the same events.

use kappa_engine::{
    Accepted, AmendRequest, CancelReason, CancelRequest, Command, CommandKind, Depth, DepthLevel,
    DepthSide, DepthUpdate, Event, EventBody, InstrumentId, Instruments, Lots, NewRequest, OrderId,
    OrderStatus, OrderType, OrderUpdate, RejectReason, Rejected, Request, Side, Ticks, TimeInForce,
    Trade, TraderId,
};
use std::collections::VecDeque;

#[derive(Clone, Debug)]
pub struct RefOrder {
    pub id: OrderId,
    pub trader: TraderId,
    pub instrument: InstrumentId,
    pub side: Side,
    pub price: Ticks,
    pub leaves: Lots,
    pub filled: Lots,
    pub post_only: bool,
    /// Lower = earlier in the queue at its price.
    pub priority: u64,
}

#[derive(Clone)]
pub struct Reference {
    instruments: Instruments,
    depth_levels: usize,
    pub resting: Vec<RefOrder>,
    /// Ids of the last `window` finished orders, in the order of their final updates.
    finished: VecDeque<OrderId>,
    window: usize,
    seq: u64,
    trade_id: u64,
    priority: u64,
    last_depth: Vec<Depth>,
}

/// The incoming order during matching.
#[derive(Clone)]
struct Incoming {
    id: OrderId,
    trader: TraderId,
    instrument: InstrumentId,
    side: Side,
    limit: Option<Ticks>,
    filled: Lots,
    leaves: Lots,
}

impl Incoming {
    fn update(&self, status: OrderStatus) -> OrderUpdate {
        let cancelled = matches!(status, OrderStatus::Cancelled(_));
        OrderUpdate {
            order_id: self.id,
            trader: self.trader,
            instrument: self.instrument,
            side: self.side,
            status,
            price: self.limit,
            quantity: self.filled + self.leaves,
            filled: self.filled,
            leaves: if cancelled { 0 } else { self.leaves },
        }
    }
}

fn better(side: Side, a: Ticks, b: Ticks) -> bool {
    match side {
        Side::Buy => a > b,
        Side::Sell => a < b,
    }
}

fn can_trade(taker_side: Side, limit: Option<Ticks>, price: Ticks) -> bool {
    match (taker_side, limit) {
        (_, None) => true,
        (Side::Buy, Some(l)) => price <= l,
        (Side::Sell, Some(l)) => price >= l,
    }
}

fn order_update(o: &RefOrder, status: OrderStatus) -> OrderUpdate {
    OrderUpdate {
        order_id: o.id,
        trader: o.trader,
        instrument: o.instrument,
        side: o.side,
        status,
        price: Some(o.price),
        quantity: o.filled + o.leaves,
        filled: o.filled,
        leaves: o.leaves,
    }
}

impl Reference {
    /// A model that remembers the last `window` finished orders' ids.
    pub fn new(instruments: Instruments, depth_levels: usize, window: usize) -> Self {
        let n = instruments.len();
        Reference {
            instruments,
            depth_levels,
            resting: Vec::new(),
            finished: VecDeque::new(),
            window,
            seq: 1,
            trade_id: 1,
            priority: 0,
            last_depth: vec![Depth::default(); n],
        }
    }

    fn emit(&mut self, out: &mut Vec<Event>, body: EventBody) {
        out.push(Event {
            seq: self.seq,
            body,
        });
        self.seq += 1;
    }

    fn reject(
        &mut self,
        out: &mut Vec<Event>,
        command: CommandKind,
        order_id: OrderId,
        trader: TraderId,
        instrument: Option<InstrumentId>,
        reason: RejectReason,
    ) {
        self.emit(
            out,
            EventBody::Rejected(Rejected {
                command,
                order_id,
                trader,
                instrument,
                reason,
            }),
        );
    }

    pub fn apply(&mut self, command: &Command) -> Vec<Event> {
        let mut out = Vec::new();
        match command.normalize(&self.instruments) {
            Err(bad) => self.reject(
                &mut out,
                bad.command,
                bad.order_id,
                bad.trader,
                bad.instrument,
                bad.reason,
            ),
            Ok(Request::New(r)) => self.new_order(r, &mut out),
            Ok(Request::Cancel(r)) => self.cancel(r, &mut out),
            Ok(Request::Amend(r)) => self.amend(r, &mut out),
        }
        // An order is finished when its final update (filled or cancelled) is emitted.
        for e in &out {
            if let EventBody::Order(u) = &e.body {
                if matches!(u.status, OrderStatus::Filled | OrderStatus::Cancelled(_)) {
                    self.finished.push_back(u.order_id);
                    if self.finished.len() > self.window {
                        self.finished.pop_front();
                    }
                }
            }
        }
        out
    }

    /// Whether `id` belongs to a live order or a remembered finished one.
    fn known(&self, id: OrderId) -> bool {
        self.finished.contains(&id) || self.resting.iter().any(|o| o.id == id)
    }

    /// Index of the best resting order the incoming order could meet next.
    fn best_opposite(&self, instrument: InstrumentId, side: Side) -> Option<usize> {
        let mut best: Option<usize> = None;
        for (i, o) in self.resting.iter().enumerate() {
            if o.instrument != instrument || o.side != side.opposite() {
                continue;
            }
            best = match best {
                None => Some(i),
                Some(b) => {
                    let cur = &self.resting[b];
                    if better(o.side, o.price, cur.price)
                        || (o.price == cur.price && o.priority < cur.priority)
                    {
                        Some(i)
                    } else {
                        Some(b)
                    }
                }
            };
        }
        best
    }

    /// Runs matching; returns true if it stopped on a self-trade.
    fn match_incoming(&mut self, t: &mut Incoming, out: &mut Vec<Event>) -> bool {
        while t.leaves > 0 {
            let Some(i) = self.best_opposite(t.instrument, t.side) else {
                return false;
            };
            let price = self.resting[i].price;
            if !can_trade(t.side, t.limit, price) {
                return false;
            }
            if self.resting[i].trader == t.trader {
                return true;
            }
            let qty = self.resting[i].leaves.min(t.leaves);
            self.resting[i].leaves -= qty;
            self.resting[i].filled += qty;
            t.leaves -= qty;
            t.filled += qty;
            let maker = self.resting[i].clone();
            let trade = Trade {
                trade_id: self.trade_id,
                instrument: t.instrument,
                price,
                quantity: qty,
                aggressor: t.side,
                maker_order_id: maker.id,
                maker_trader: maker.trader,
                taker_order_id: t.id,
                taker_trader: t.trader,
            };
            self.trade_id += 1;
            self.emit(out, EventBody::Trade(trade));
            let ms = if maker.leaves == 0 {
                OrderStatus::Filled
            } else {
                OrderStatus::PartiallyFilled
            };
            self.emit(out, EventBody::Order(order_update(&maker, ms)));
            let ts = if t.leaves == 0 {
                OrderStatus::Filled
            } else {
                OrderStatus::PartiallyFilled
            };
            self.emit(out, EventBody::Order(t.update(ts)));
            if maker.leaves == 0 {
                self.resting.remove(i);
            }
        }
        false
    }

    fn would_cross(&self, instrument: InstrumentId, side: Side, price: Ticks) -> bool {
        match self.best_opposite(instrument, side) {
            Some(i) => can_trade(side, Some(price), self.resting[i].price),
            None => false,
        }
    }

    fn rest(&mut self, t: &Incoming, post_only: bool) {
        self.priority += 1;
        self.resting.push(RefOrder {
            id: t.id,
            trader: t.trader,
            instrument: t.instrument,
            side: t.side,
            price: t.limit.expect("only limit orders rest"),
            leaves: t.leaves,
            filled: t.filled,
            post_only,
            priority: self.priority,
        });
    }

    fn new_order(&mut self, r: NewRequest, out: &mut Vec<Event>) {
        if self.known(r.order_id) {
            return self.reject(
                out,
                CommandKind::New,
                r.order_id,
                r.trader,
                Some(r.instrument),
                RejectReason::DuplicateOrderId,
            );
        }
        if r.post_only && self.would_cross(r.instrument, r.side, r.price.unwrap()) {
            return self.reject(
                out,
                CommandKind::New,
                r.order_id,
                r.trader,
                Some(r.instrument),
                RejectReason::PostOnlyWouldCross,
            );
        }
        self.emit(
            out,
            EventBody::Accepted(Accepted {
                order_id: r.order_id,
                trader: r.trader,
                instrument: r.instrument,
                side: r.side,
                order_type: r.order_type,
                time_in_force: r.time_in_force,
                post_only: r.post_only,
                price: r.price,
                quantity: r.quantity,
            }),
        );
        let mut t = Incoming {
            id: r.order_id,
            trader: r.trader,
            instrument: r.instrument,
            side: r.side,
            limit: r.price,
            filled: 0,
            leaves: r.quantity,
        };
        if r.time_in_force == TimeInForce::Fok {
            // Obviously correct: try it on a copy of the whole state.
            let mut trial = self.clone();
            let mut trial_t = t.clone();
            trial.match_incoming(&mut trial_t, &mut Vec::new());
            if trial_t.leaves > 0 {
                let u = t.update(OrderStatus::Cancelled(CancelReason::FokUnfillable));
                return self.emit(out, EventBody::Order(u));
            }
        }
        let self_trade = self.match_incoming(&mut t, out);
        if t.leaves == 0 {
            return;
        }
        let reason = if self_trade {
            CancelReason::SelfTradePrevention
        } else if r.order_type == OrderType::Market {
            CancelReason::MarketRemainder
        } else if r.time_in_force == TimeInForce::Ioc {
            CancelReason::IocRemainder
        } else {
            self.rest(&t, r.post_only);
            if t.filled == 0 {
                self.emit(out, EventBody::Order(t.update(OrderStatus::New)));
            }
            return;
        };
        self.emit(
            out,
            EventBody::Order(t.update(OrderStatus::Cancelled(reason))),
        );
    }

    fn find_live(
        &self,
        id: OrderId,
        trader: TraderId,
        instrument: InstrumentId,
    ) -> Result<usize, RejectReason> {
        match self.resting.iter().position(|o| o.id == id) {
            None if self.finished.contains(&id) => Err(RejectReason::OrderNotActive),
            None => Err(RejectReason::UnknownOrder),
            Some(i) if self.resting[i].trader != trader => Err(RejectReason::NotOrderOwner),
            Some(i) if self.resting[i].instrument != instrument => {
                Err(RejectReason::InstrumentMismatch)
            }
            Some(i) => Ok(i),
        }
    }

    fn cancel(&mut self, r: CancelRequest, out: &mut Vec<Event>) {
        match self.find_live(r.order_id, r.trader, r.instrument) {
            Err(reason) => self.reject(
                out,
                CommandKind::Cancel,
                r.order_id,
                r.trader,
                Some(r.instrument),
                reason,
            ),
            Ok(i) => {
                let o = self.resting.remove(i);
                let mut u = order_update(&o, OrderStatus::Cancelled(CancelReason::Requested));
                u.leaves = 0;
                self.emit(out, EventBody::Order(u));
            }
        }
    }

    fn amend(&mut self, r: AmendRequest, out: &mut Vec<Event>) {
        let i = match self.find_live(r.order_id, r.trader, r.instrument) {
            Err(reason) => {
                return self.reject(
                    out,
                    CommandKind::Amend,
                    r.order_id,
                    r.trader,
                    Some(r.instrument),
                    reason,
                )
            }
            Ok(i) => i,
        };
        let old = self.resting[i].clone();
        let price = r.price.unwrap_or(old.price);
        // A total quantity leaves total − filled open (refused when nothing would be open).
        let leaves = match (r.quantity, r.total) {
            (None, _) => old.leaves,
            (Some(q), true) if q > old.filled => q - old.filled,
            (Some(_), true) => {
                return self.reject(
                    out,
                    CommandKind::Amend,
                    r.order_id,
                    r.trader,
                    Some(r.instrument),
                    RejectReason::QuantityNotPositive,
                )
            }
            (Some(q), false) => q,
        };
        if price == old.price {
            if leaves > old.leaves {
                self.priority += 1;
                self.resting[i].priority = self.priority;
            }
            self.resting[i].leaves = leaves;
            let u = order_update(&self.resting[i], OrderStatus::Amended);
            return self.emit(out, EventBody::Order(u));
        }
        if old.post_only && self.would_cross(old.instrument, old.side, price) {
            return self.reject(
                out,
                CommandKind::Amend,
                r.order_id,
                r.trader,
                Some(r.instrument),
                RejectReason::PostOnlyWouldCross,
            );
        }
        let mut o = self.resting.remove(i);
        o.price = price;
        o.leaves = leaves;
        self.emit(
            out,
            EventBody::Order(order_update(&o, OrderStatus::Amended)),
        );
        let mut t = Incoming {
            id: o.id,
            trader: o.trader,
            instrument: o.instrument,
            side: o.side,
            limit: Some(price),
            filled: o.filled,
            leaves,
        };
        let self_trade = self.match_incoming(&mut t, out);
        if t.leaves == 0 {
            return;
        }
        if self_trade {
            let u = t.update(OrderStatus::Cancelled(CancelReason::SelfTradePrevention));
            return self.emit(out, EventBody::Order(u));
        }
        self.rest(&t, o.post_only);
    }

    /// Top-n levels of one instrument, computed from scratch.
    pub fn depth(&self, instrument: InstrumentId, n: usize) -> Depth {
        let side_depth = |side: Side| {
            let mut prices: Vec<Ticks> = self
                .resting
                .iter()
                .filter(|o| o.instrument == instrument && o.side == side)
                .map(|o| o.price)
                .collect();
            prices.sort();
            prices.dedup();
            if side == Side::Buy {
                prices.reverse();
            }
            let mut d = DepthSide::default();
            for p in prices.into_iter().take(n) {
                let at: Vec<&RefOrder> = self
                    .resting
                    .iter()
                    .filter(|o| o.instrument == instrument && o.side == side && o.price == p)
                    .collect();
                let level = DepthLevel {
                    price: p,
                    quantity: at.iter().map(|o| o.leaves).sum(),
                    orders: at.len() as u32,
                };
                d = push_level(d, level);
            }
            d
        };
        Depth {
            bids: side_depth(Side::Buy),
            asks: side_depth(Side::Sell),
        }
    }

    /// Depth updates for every instrument whose top-N differs from the last one emitted.
    pub fn drain_depth(&mut self) -> Vec<DepthUpdate> {
        let mut out = Vec::new();
        for i in 0..self.instruments.len() {
            let id = InstrumentId(i as u16);
            let d = self.depth(id, self.depth_levels);
            if d != self.last_depth[i] {
                self.last_depth[i] = d;
                out.push(DepthUpdate {
                    seq: self.seq,
                    instrument: id,
                    depth: d,
                });
                self.seq += 1;
            }
        }
        out
    }

    /// Resting orders of one side in priority order.
    pub fn resting_orders(
        &self,
        instrument: InstrumentId,
        side: Side,
    ) -> Vec<(OrderId, Ticks, Lots)> {
        let mut v: Vec<&RefOrder> = self
            .resting
            .iter()
            .filter(|o| o.instrument == instrument && o.side == side)
            .collect();
        v.sort_by_key(|o| {
            (
                if side == Side::Buy { -o.price } else { o.price },
                o.priority,
            )
        });
        v.into_iter().map(|o| (o.id, o.price, o.leaves)).collect()
    }
}

/// Appends a level to a `DepthSide` through its public API.
fn push_level(side: DepthSide, level: DepthLevel) -> DepthSide {
    let mut levels: Vec<DepthLevel> = side.levels().to_vec();
    levels.push(level);
    DepthSide::from_levels(&levels)
}
