//! The matching engine: a deterministic state machine from commands to events.
//!
//! Rules (price-time priority):
//! - An incoming order trades against the best opposite level first, and within a level against
//!   the oldest order first. The trade price is always the resting (maker) order's price. A limit
//!   order never trades through its limit.
//! - Each fill emits `Trade`, then the maker's and the taker's status (`PartiallyFilled`/`Filled`).
//! - After matching, a GTC limit remainder rests (`New` if nothing filled); an IOC remainder is
//!   cancelled (`IocRemainder`); a market remainder is cancelled (`MarketRemainder`); a FOK order
//!   is checked *before* matching and, if it cannot fill completely, is cancelled without trades
//!   (`FokUnfillable`). Post-only orders that would trade are rejected (`PostOnlyWouldCross`).
//! - **Self-trade prevention (cancel newest):** when the incoming order reaches a resting order
//!   of the same trader, matching stops; fills made before that point stand, the incoming
//!   remainder is cancelled (`SelfTradePrevention`) and the resting order is untouched. A FOK
//!   order that would need to cross its own order is unfillable.
//! - Amend: quantity down at the same price keeps priority; quantity up or a new price loses it; a
//!   new price that crosses trades immediately as a taker (STP applies, post-only orders are
//!   rejected instead).
//! - Cancel/amend of an unknown order, a finished order, another trader's order, or naming the
//!   wrong instrument is rejected with that reason.
//! - Duplicate ids: a new order whose id belongs to a live order, or to one of the last
//!   [`EngineConfig::finished_ids_window`] finished orders, is rejected (`DuplicateOrderId`);
//!   older ids are forgotten, so memory follows live orders, not history (see the `index` module).
//!   A forgotten id's cancel is `UnknownOrder` rather than `OrderNotActive`.
//!
//! Nothing here reads a clock, does I/O, spawns threads or iterates a hash map, so the same
//! commands always produce the same events.

use crate::book::{key_of, price_of, Book, Ladder, Slab, Slot, NIL};
use crate::command::{AmendRequest, CancelRequest, Command, NewRequest, Request};
use crate::event::{
    Accepted, CancelReason, Depth, DepthUpdate, Event, EventBody, OrderStatus, OrderUpdate,
    RejectReason, Rejected, Trade, MAX_DEPTH_LEVELS,
};
use crate::index::{OrderIndex, FINISHED};
use crate::instrument::Instruments;
use crate::types::{InstrumentId, Lots, OrderId, OrderType, Side, Ticks, TimeInForce, TraderId};
use serde::{Deserialize, Serialize};

/// Engine settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineConfig {
    /// Levels per side in emitted depth updates (1..=[`MAX_DEPTH_LEVELS`]; default 5).
    pub depth_levels: usize,
    /// How many finished orders' ids stay reserved: a new order reusing the id of a live order
    /// or of one of the last `finished_ids_window` finished orders is rejected as
    /// `duplicate_order_id` (default [`DEFAULT_FINISHED_IDS_WINDOW`]). Memory: ≈ 12–20 bytes per
    /// remembered id (see the `index` module).
    pub finished_ids_window: usize,
}

/// Default [`EngineConfig::finished_ids_window`].
pub const DEFAULT_FINISHED_IDS_WINDOW: usize = 100_000;

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            depth_levels: 5,
            finished_ids_window: DEFAULT_FINISHED_IDS_WINDOW,
        }
    }
}

/// A resting order, as seen by queries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestingOrder {
    pub order_id: OrderId,
    pub trader: TraderId,
    pub instrument: InstrumentId,
    pub side: Side,
    pub price: Ticks,
    pub leaves: Lots,
    pub filled: Lots,
}

/// The incoming side of a match.
struct Taker {
    order_id: OrderId,
    trader: TraderId,
    instrument: InstrumentId,
    side: Side,
    limit: Option<Ticks>,
    filled: Lots,
    leaves: Lots,
}

impl Taker {
    fn update(&self, status: OrderStatus) -> OrderUpdate {
        OrderUpdate {
            order_id: self.order_id,
            trader: self.trader,
            instrument: self.instrument,
            side: self.side,
            status,
            price: self.limit,
            quantity: self.filled + self.leaves,
            filled: self.filled,
            leaves: self.leaves,
        }
    }

    /// The taker's remainder is cancelled.
    fn cancelled(&self, reason: CancelReason) -> OrderUpdate {
        OrderUpdate {
            leaves: 0,
            ..self.update(OrderStatus::Cancelled(reason))
        }
    }
}

/// `true` when a `side` order limited at `limit` may trade at `price`.
#[inline]
fn acceptable(side: Side, limit: Ticks, price: Ticks) -> bool {
    match side {
        Side::Buy => price <= limit,
        Side::Sell => price >= limit,
    }
}

#[inline]
fn emit(out: &mut Vec<Event>, seq: &mut u64, body: EventBody) {
    out.push(Event { seq: *seq, body });
    *seq += 1;
}

fn slot_update(s: &Slot, status: OrderStatus) -> OrderUpdate {
    OrderUpdate {
        order_id: s.id,
        trader: s.trader,
        instrument: s.instrument,
        side: s.side,
        status,
        price: Some(s.price),
        quantity: s.filled + s.leaves,
        filled: s.filled,
        leaves: s.leaves,
    }
}

/// Marks `instrument`'s top-N as changed.
#[inline]
fn touch(books: &mut [Book], dirty: &mut Vec<InstrumentId>, instrument: InstrumentId) {
    let book = &mut books[instrument.0 as usize];
    if !book.dirty {
        book.dirty = true;
        dirty.push(instrument);
    }
}

/// A price-time-priority matching engine for a set of instruments.
///
/// ```
/// use kappa_engine::{Command, Engine, EventBody, Instruments, NewOrder, OrderType, Side,
///                    TimeInForce, FixedStr};
/// use rust_decimal::Decimal;
///
/// let instruments = Instruments::from_toml_str(r#"
///     [[instrument]]
///     symbol = "TCS"
///     tick_size = "0.05"
///     lot_size = "1"
///     max_price = "100000"
///     max_quantity = "1000000"
/// "#).unwrap();
/// let mut engine = Engine::new(instruments);
/// let order = |id, trader: &str, side, price: i64| Command::New(NewOrder {
///     order_id: id,
///     trader: FixedStr::new(trader).unwrap(),
///     instrument: FixedStr::new("TCS").unwrap(),
///     side,
///     order_type: OrderType::Limit,
///     time_in_force: TimeInForce::Gtc,
///     post_only: false,
///     price: Some(Decimal::new(price, 0)),
///     quantity: Decimal::new(5, 0),
/// });
/// engine.apply(&order(1, "alice", Side::Sell, 15));
/// let events = engine.apply(&order(2, "bob", Side::Buy, 16));
/// let trade = events.iter().find_map(|e| match e.body {
///     EventBody::Trade(t) => Some(t),
///     _ => None,
/// }).unwrap();
/// assert_eq!(trade.price, 300); // 15.00 in ticks of 0.05: the resting order's price
/// assert_eq!(trade.quantity, 5);
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Engine {
    instruments: Instruments,
    config: EngineConfig,
    books: Vec<Book>,
    slab: Slab,
    /// Order id → slot of the live order, or finished.
    orders: OrderIndex,
    next_seq: u64,
    next_trade_id: u64,
    /// Instruments whose top-N changed since the last [`Engine::drain_depth`].
    dirty: Vec<InstrumentId>,
}

impl Engine {
    /// An empty engine with default settings.
    pub fn new(instruments: Instruments) -> Self {
        Self::with_config(instruments, EngineConfig::default())
    }

    /// An empty engine. `config.depth_levels` is clamped to `1..=MAX_DEPTH_LEVELS`.
    pub fn with_config(instruments: Instruments, mut config: EngineConfig) -> Self {
        config.depth_levels = config.depth_levels.clamp(1, MAX_DEPTH_LEVELS);
        let books = (0..instruments.len()).map(|_| Book::default()).collect();
        Engine {
            instruments,
            config,
            books,
            slab: Slab::default(),
            orders: OrderIndex::new(config.finished_ids_window),
            next_seq: 1,
            next_trade_id: 1,
            dirty: Vec::new(),
        }
    }

    /// The instrument table.
    pub fn instruments(&self) -> &Instruments {
        &self.instruments
    }

    /// The settings.
    pub fn config(&self) -> EngineConfig {
        self.config
    }

    /// Sequence number the next event will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Applies one command and returns its events (allocates; see [`Engine::apply_into`]).
    pub fn apply(&mut self, command: &Command) -> Vec<Event> {
        let mut out = Vec::new();
        self.apply_into(command, &mut out);
        out
    }

    /// Applies one command, appending its events to `out`.
    pub fn apply_into(&mut self, command: &Command, out: &mut Vec<Event>) {
        match command.normalize(&self.instruments) {
            Ok(request) => self.execute_valid(request, out),
            Err(bad) => emit(
                out,
                &mut self.next_seq,
                EventBody::Rejected(Rejected {
                    command: bad.command,
                    order_id: bad.order_id,
                    trader: bad.trader,
                    instrument: bad.instrument,
                    reason: bad.reason,
                }),
            ),
        }
    }

    /// Applies a command already in integer units (the fast path), appending events to `out`.
    pub fn execute(&mut self, mut request: Request, out: &mut Vec<Event>) {
        match request.validate(&self.instruments) {
            Ok(()) => self.execute_valid(request, out),
            Err(reason) => {
                let (order_id, trader, instrument) = match request {
                    Request::New(r) => (r.order_id, r.trader, r.instrument),
                    Request::Cancel(r) => (r.order_id, r.trader, r.instrument),
                    Request::Amend(r) => (r.order_id, r.trader, r.instrument),
                };
                let instrument = self.instruments.contains(instrument).then_some(instrument);
                self.reject(request.kind(), order_id, trader, instrument, reason, out);
            }
        }
    }

    fn execute_valid(&mut self, request: Request, out: &mut Vec<Event>) {
        match request {
            Request::New(r) => self.new_order(r, out),
            Request::Cancel(r) => self.cancel(r, out),
            Request::Amend(r) => self.amend(r, out),
        }
    }

    fn reject(
        &mut self,
        command: crate::event::CommandKind,
        order_id: OrderId,
        trader: TraderId,
        instrument: Option<InstrumentId>,
        reason: RejectReason,
        out: &mut Vec<Event>,
    ) {
        emit(
            out,
            &mut self.next_seq,
            EventBody::Rejected(Rejected {
                command,
                order_id,
                trader,
                instrument,
                reason,
            }),
        );
    }

    fn emit(&mut self, out: &mut Vec<Event>, body: EventBody) {
        emit(out, &mut self.next_seq, body);
    }

    /// `true` when a `side` order at `price` would trade on arrival.
    fn would_cross(&self, instrument: InstrumentId, side: Side, price: Ticks) -> bool {
        match self.books[instrument.0 as usize].best(side.opposite()) {
            Some(best) => acceptable(side, price, best),
            None => false,
        }
    }

    fn new_order(&mut self, r: NewRequest, out: &mut Vec<Event>) {
        use crate::event::CommandKind::New;
        if self.orders.contains(r.order_id) {
            return self.reject(
                New,
                r.order_id,
                r.trader,
                Some(r.instrument),
                RejectReason::DuplicateOrderId,
                out,
            );
        }
        if r.post_only {
            // validate() guarantees post-only orders are GTC limit orders with a price.
            let price = r.price.unwrap_or(0);
            if self.would_cross(r.instrument, r.side, price) {
                return self.reject(
                    New,
                    r.order_id,
                    r.trader,
                    Some(r.instrument),
                    RejectReason::PostOnlyWouldCross,
                    out,
                );
            }
        }
        self.orders.set(r.order_id, FINISHED);
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
        let mut taker = Taker {
            order_id: r.order_id,
            trader: r.trader,
            instrument: r.instrument,
            side: r.side,
            limit: r.price,
            filled: 0,
            leaves: r.quantity,
        };
        if r.time_in_force == TimeInForce::Fok && !self.fillable(&taker) {
            let update = taker.cancelled(CancelReason::FokUnfillable);
            self.orders.finish(r.order_id);
            return self.emit(out, EventBody::Order(update));
        }
        let self_trade = self.match_taker(&mut taker, out);
        if taker.leaves == 0 {
            return self.orders.finish(r.order_id);
        }
        let reason = if self_trade {
            CancelReason::SelfTradePrevention
        } else {
            match (r.order_type, r.time_in_force) {
                (OrderType::Limit, TimeInForce::Gtc) => {
                    let slot = Slot {
                        id: r.order_id,
                        trader: r.trader,
                        price: r.price.unwrap_or(0),
                        leaves: taker.leaves,
                        filled: taker.filled,
                        prev: NIL,
                        next: NIL,
                        instrument: r.instrument,
                        side: r.side,
                        post_only: r.post_only,
                    };
                    let i = self.slab.alloc(slot);
                    self.rest(i);
                    if taker.filled == 0 {
                        self.emit(out, EventBody::Order(taker.update(OrderStatus::New)));
                    }
                    return;
                }
                (OrderType::Market, _) => CancelReason::MarketRemainder,
                (_, TimeInForce::Fok) => CancelReason::FokUnfillable,
                (OrderType::Limit, TimeInForce::Ioc) => CancelReason::IocRemainder,
            }
        };
        self.orders.finish(r.order_id);
        self.emit(out, EventBody::Order(taker.cancelled(reason)));
    }

    /// Links slot `i` at the back of its price level and indexes it by id.
    fn rest(&mut self, i: u32) {
        let s = *self.slab.get(i);
        let ladder = self.books[s.instrument.0 as usize].side_mut(s.side);
        let rank = ladder.push_back(&mut self.slab, key_of(s.side, s.price), i, s.leaves);
        self.orders.set(s.id, i);
        if rank < self.config.depth_levels {
            touch(&mut self.books, &mut self.dirty, s.instrument);
        }
    }

    /// Unlinks slot `i` from its level (the slot stays allocated).
    fn unlink(&mut self, i: u32) {
        let s = *self.slab.get(i);
        let ladder = self.books[s.instrument.0 as usize].side_mut(s.side);
        let loc = ladder
            .locate(key_of(s.side, s.price))
            .expect("a resting order's level exists");
        let rank = ladder.unlink(&mut self.slab, loc, i, s.leaves);
        if rank < self.config.depth_levels {
            touch(&mut self.books, &mut self.dirty, s.instrument);
        }
    }

    /// Frees slot `i` and marks its order finished.
    fn finish(&mut self, i: u32) {
        let id = self.slab.get(i).id;
        self.orders.finish(id);
        self.slab.release(i);
    }

    /// Whether `taker` could fill completely right now (FOK pre-check, honouring STP).
    fn fillable(&self, taker: &Taker) -> bool {
        let opposite = taker.side.opposite();
        let ladder = self.books[taker.instrument.0 as usize].side(opposite);
        let mut need = taker.leaves;
        for level in ladder.iter_best_first() {
            let price = price_of(opposite, level.key);
            if let Some(limit) = taker.limit {
                if !acceptable(taker.side, limit, price) {
                    return false;
                }
            }
            let mut i = level.head;
            while i != NIL {
                let s = self.slab.get(i);
                if s.trader == taker.trader {
                    return false;
                }
                if s.leaves >= need {
                    return true;
                }
                need -= s.leaves;
                i = s.next;
            }
        }
        false
    }

    /// Matches `taker` against the opposite side. Returns `true` when matching stopped because
    /// of self-trade prevention.
    fn match_taker(&mut self, taker: &mut Taker, out: &mut Vec<Event>) -> bool {
        let Engine {
            books,
            slab,
            orders,
            next_seq,
            next_trade_id,
            dirty,
            ..
        } = self;
        let opposite = taker.side.opposite();
        let book = &mut books[taker.instrument.0 as usize];
        let ladder: &mut Ladder = book.side_mut(opposite);
        let mut traded = false;
        let mut self_trade = false;
        'levels: while taker.leaves > 0 {
            let Some(best) = ladder.best() else {
                break;
            };
            let price = price_of(opposite, best.key);
            if let Some(limit) = taker.limit {
                if !acceptable(taker.side, limit, price) {
                    break;
                }
            }
            loop {
                let level = ladder.best_mut().expect("checked above");
                let mi = level.head;
                let maker = slab.get_mut(mi);
                if maker.trader == taker.trader {
                    self_trade = true;
                    break 'levels;
                }
                let qty = maker.leaves.min(taker.leaves);
                maker.leaves -= qty;
                maker.filled += qty;
                taker.leaves -= qty;
                taker.filled += qty;
                level.qty -= qty;
                traded = true;
                let trade = Trade {
                    trade_id: *next_trade_id,
                    instrument: taker.instrument,
                    price,
                    quantity: qty,
                    aggressor: taker.side,
                    maker_order_id: maker.id,
                    maker_trader: maker.trader,
                    taker_order_id: taker.order_id,
                    taker_trader: taker.trader,
                };
                *next_trade_id += 1;
                emit(out, next_seq, EventBody::Trade(trade));
                let maker_done = maker.leaves == 0;
                let maker_status = if maker_done {
                    OrderStatus::Filled
                } else {
                    OrderStatus::PartiallyFilled
                };
                emit(
                    out,
                    next_seq,
                    EventBody::Order(slot_update(maker, maker_status)),
                );
                let taker_status = if taker.leaves == 0 {
                    OrderStatus::Filled
                } else {
                    OrderStatus::PartiallyFilled
                };
                emit(out, next_seq, EventBody::Order(taker.update(taker_status)));
                if maker_done {
                    let next = maker.next;
                    orders.finish(maker.id);
                    slab.release(mi);
                    level.head = next;
                    level.count -= 1;
                    if next == NIL {
                        ladder.pop_best();
                        continue 'levels;
                    }
                    slab.get_mut(next).prev = NIL;
                }
                if taker.leaves == 0 {
                    break 'levels;
                }
            }
        }
        if traded {
            touch(books, dirty, taker.instrument);
        }
        self_trade
    }

    /// The slot of live order `id`, or the reason it cannot be touched.
    fn live_order(
        &self,
        id: OrderId,
        trader: TraderId,
        instrument: InstrumentId,
    ) -> Result<u32, RejectReason> {
        match self.orders.get(id) {
            None => Err(RejectReason::UnknownOrder),
            Some(FINISHED) => Err(RejectReason::OrderNotActive),
            Some(i) => {
                let s = self.slab.get(i);
                if s.trader != trader {
                    Err(RejectReason::NotOrderOwner)
                } else if s.instrument != instrument {
                    Err(RejectReason::InstrumentMismatch)
                } else {
                    Ok(i)
                }
            }
        }
    }

    fn cancel(&mut self, r: CancelRequest, out: &mut Vec<Event>) {
        let i = match self.live_order(r.order_id, r.trader, r.instrument) {
            Ok(i) => i,
            Err(reason) => {
                let kind = crate::event::CommandKind::Cancel;
                return self.reject(kind, r.order_id, r.trader, Some(r.instrument), reason, out);
            }
        };
        self.unlink(i);
        let s = *self.slab.get(i);
        self.finish(i);
        let update = OrderUpdate {
            leaves: 0,
            ..slot_update(&s, OrderStatus::Cancelled(CancelReason::Requested))
        };
        self.emit(out, EventBody::Order(update));
    }

    fn amend(&mut self, r: AmendRequest, out: &mut Vec<Event>) {
        use crate::event::CommandKind::Amend;
        let i = match self.live_order(r.order_id, r.trader, r.instrument) {
            Ok(i) => i,
            Err(reason) => {
                return self.reject(Amend, r.order_id, r.trader, Some(r.instrument), reason, out);
            }
        };
        let s = *self.slab.get(i);
        let price = r.price.unwrap_or(s.price);
        let leaves = match r.quantity {
            None => s.leaves,
            Some(q) if r.total => match q.checked_sub(s.filled) {
                Some(open) if open > 0 => open,
                _ => {
                    let reason = RejectReason::QuantityNotPositive;
                    return self.reject(
                        Amend,
                        r.order_id,
                        r.trader,
                        Some(r.instrument),
                        reason,
                        out,
                    );
                }
            },
            Some(q) => q,
        };
        if price == s.price {
            if leaves <= s.leaves {
                // Same price, quantity down (or unchanged): keep time priority.
                let ladder = self.books[s.instrument.0 as usize].side_mut(s.side);
                let loc = ladder
                    .locate(key_of(s.side, s.price))
                    .expect("a resting order's level exists");
                ladder.level_mut(loc).qty -= s.leaves - leaves;
                let rank = ladder.rank(loc);
                self.slab.get_mut(i).leaves = leaves;
                if leaves != s.leaves && rank < self.config.depth_levels {
                    touch(&mut self.books, &mut self.dirty, s.instrument);
                }
            } else {
                // Quantity up: back of the queue at the same price.
                self.unlink(i);
                self.slab.get_mut(i).leaves = leaves;
                self.rest(i);
            }
            let update = slot_update(self.slab.get(i), OrderStatus::Amended);
            return self.emit(out, EventBody::Order(update));
        }
        if s.post_only && self.would_cross(s.instrument, s.side, price) {
            return self.reject(
                Amend,
                r.order_id,
                r.trader,
                Some(r.instrument),
                RejectReason::PostOnlyWouldCross,
                out,
            );
        }
        // New price: loses priority and may trade on arrival.
        self.unlink(i);
        {
            let slot = self.slab.get_mut(i);
            slot.price = price;
            slot.leaves = leaves;
        }
        let update = slot_update(self.slab.get(i), OrderStatus::Amended);
        self.emit(out, EventBody::Order(update));
        let mut taker = Taker {
            order_id: s.id,
            trader: s.trader,
            instrument: s.instrument,
            side: s.side,
            limit: Some(price),
            filled: s.filled,
            leaves,
        };
        let self_trade = self.match_taker(&mut taker, out);
        if taker.leaves == 0 {
            self.finish(i);
        } else if self_trade {
            self.finish(i);
            let update = taker.cancelled(CancelReason::SelfTradePrevention);
            self.emit(out, EventBody::Order(update));
        } else {
            let slot = self.slab.get_mut(i);
            slot.leaves = taker.leaves;
            slot.filled = taker.filled;
            self.rest(i);
        }
    }

    /// Appends a [`DepthUpdate`] for every instrument whose top-N changed since the last call
    /// (in instrument order), each with the next sequence number. Call it after every command for
    /// an unconflated feed, or once per batch to conflate.
    pub fn drain_depth(&mut self, out: &mut Vec<DepthUpdate>) {
        let Engine {
            books,
            dirty,
            next_seq,
            config,
            ..
        } = self;
        dirty.sort_unstable();
        let n = config.depth_levels;
        for instrument in dirty.drain(..) {
            let book = &mut books[instrument.0 as usize];
            book.dirty = false;
            // The last published depth is updated in place, level by level (a depth is ~500
            // bytes; only the top n levels are compared and written), and copied out only when
            // it changed, in one copy.
            let last = &mut book.last;
            let bids = book.bids.refresh_depth(Side::Buy, n, &mut last.depth.bids);
            let asks = book.asks.refresh_depth(Side::Sell, n, &mut last.depth.asks);
            if bids | asks {
                last.seq = *next_seq;
                last.instrument = instrument;
                out.extend_from_slice(std::slice::from_ref(last));
                *next_seq += 1;
            }
        }
    }

    /// Current top-`n` levels (capped at [`MAX_DEPTH_LEVELS`]) of `instrument`.
    pub fn depth(&self, instrument: InstrumentId, n: usize) -> Depth {
        book_depth(&self.books[instrument.0 as usize], n.min(MAX_DEPTH_LEVELS))
    }

    /// Best price on `side` of `instrument`.
    pub fn best(&self, instrument: InstrumentId, side: Side) -> Option<Ticks> {
        self.books[instrument.0 as usize].best(side)
    }

    /// The live order `id`, if it is resting.
    pub fn order(&self, id: OrderId) -> Option<RestingOrder> {
        match self.orders.get(id) {
            Some(i) if i != FINISHED => Some(resting(self.slab.get(i))),
            _ => None,
        }
    }

    /// All resting orders on one side of a book in priority order: best price first, oldest
    /// first within a price.
    pub fn resting_orders(&self, instrument: InstrumentId, side: Side) -> Vec<RestingOrder> {
        let mut orders = Vec::new();
        for level in self.books[instrument.0 as usize]
            .side(side)
            .iter_best_first()
        {
            let mut i = level.head;
            while i != NIL {
                let s = self.slab.get(i);
                orders.push(resting(s));
                i = s.next;
            }
        }
        orders
    }

    /// Number of resting orders across all books.
    pub fn resting_count(&self) -> usize {
        self.slab.live()
    }

    /// Number of price levels across all books and sides.
    pub fn level_count(&self) -> usize {
        self.books.iter().map(|b| b.bids.len() + b.asks.len()).sum()
    }

    /// Approximate heap bytes: (books and order slots, id index).
    pub fn heap_bytes(&self) -> (usize, usize) {
        let books: usize = self
            .books
            .iter()
            .map(|b| b.bids.heap_bytes() + b.asks.heap_bytes())
            .sum();
        (books + self.slab.heap_bytes(), self.orders.heap_bytes())
    }
}

fn resting(s: &Slot) -> RestingOrder {
    RestingOrder {
        order_id: s.id,
        trader: s.trader,
        instrument: s.instrument,
        side: s.side,
        price: s.price,
        leaves: s.leaves,
        filled: s.filled,
    }
}

fn book_depth(book: &Book, n: usize) -> Depth {
    let mut depth = Depth::default();
    book_depth_into(book, n, &mut depth);
    depth
}

/// Fills an empty `depth` with the top `n` levels of `book`.
fn book_depth_into(book: &Book, n: usize, depth: &mut Depth) {
    book.bids.depth_into(Side::Buy, n, &mut depth.bids);
    book.asks.depth_into(Side::Sell, n, &mut depth.asks);
}
