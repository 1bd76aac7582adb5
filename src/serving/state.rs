//! The serving layer's in-memory market state: the latest top-5 book per instrument, the recent
//! trade tape, bars with their SMAs, positions with each trader's P&L history and the leaderboard,
//! and the last status of every order, indexed by trader — all bounded. Pure: it is fed decoded
//! messages and answered queries, and knows nothing of Kafka or HTTP, so it is tested directly.
//!
//! Every change is stamped with a global, increasing version. A live client holds the version it
//! has seen; [`MarketState::delta`] returns what changed for its instrument since then, so one
//! conflated update per tick replaces a firehose of per-message pushes.

use crate::analytics::leaderboard::{Leaderboard, LEADERBOARD_SIZE};
use crate::wire::{
    json_decimal, BarMessage, BookMessage, LeaderboardMessage, LevelMessage, OrderEventMessage,
    PnlMessage, SmaMessage, SmaValue, TotalsMessage, TradeMessage,
};
use kappa_engine::Instruments;
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

/// Most `trades` partitions whose P&L totals make up the leaderboard.
pub const MAX_TOTALS_PARTITIONS: i32 = 4096;

/// How much history the state keeps.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Trades kept per instrument (the tape).
    pub trades: usize,
    /// Bars (and SMA points) kept per instrument.
    pub bars: usize,
    /// Orders whose last status is kept (oldest forgotten first).
    pub orders: usize,
    /// Traders whose P&L rows are kept (the least recently updated forgotten first).
    pub pnl_traders: usize,
    /// Points of P&L history kept per kept trader (the oldest forgotten first).
    pub pnl_history: usize,
}

impl Limits {
    /// Measured heap bytes per kept order status, its place in the per-trader index included
    /// (tests/memory.rs checks it: ≈ 870 B with a trader per order since order events carry a
    /// fill's `last_price`/`last_quantity` and a rejection's `command`; ≈ 755 B before).
    pub const BYTES_PER_ORDER: usize = 880;
    /// Measured heap bytes per kept P&L row (one trader × instrument; tests/memory.rs).
    pub const BYTES_PER_PNL_ROW: usize = 1_300;
    /// Measured heap bytes per kept point of P&L history (tests/memory.rs).
    pub const BYTES_PER_PNL_POINT: usize = 25;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            trades: 200,
            bars: 720,
            orders: 200_000,
            pnl_traders: 10_000,
            pnl_history: 600,
        }
    }
}

/// One instrument's view.
#[derive(Debug)]
struct InstrumentState {
    symbol: String,
    name: String,
    tick_size: Decimal,
    lot_size: Decimal,
    book: Option<BookMessage>,
    book_version: u64,
    /// (version, trade), oldest first.
    trades: VecDeque<(u64, TradeMessage)>,
    trade_count: u64,
    volume: Decimal,
    /// Bars by window end, with the version of their last change.
    bars: BTreeMap<i64, (u64, BarMessage)>,
    smas: BTreeMap<i64, (u64, SmaMessage)>,
    version: u64,
}

/// Counts of what the state was fed.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct FeedCounts {
    pub book: u64,
    pub trades: u64,
    pub order_events: u64,
    pub analytics: u64,
    /// Messages that did not decode (they are the producing job's bug; counted, never fatal).
    pub undecodable: u64,
}

/// The market state. See the module documentation.
#[derive(Debug)]
pub struct MarketState {
    limits: Limits,
    version: u64,
    instruments: Vec<InstrumentState>,
    by_symbol: HashMap<String, usize>,
    /// Ordered map, not a hash map: under the insert/evict churn at the cap a hash table
    /// doubles (it grows when more than half its buckets are in use at a rehash); a B-tree's
    /// memory stays proportional to its entries (tests/memory.rs).
    orders: BTreeMap<u64, KeptOrder>,
    /// Kept order ids, first seen first: the eviction order of `orders`.
    order_fifo: VecDeque<u64>,
    /// The sequence number of the last order seen first.
    order_seq: u64,
    /// The kept orders by trader.
    orders_by_trader: OrderIndex,
    /// trader → positions and P&L history.
    pnl: BTreeMap<String, TraderPnl>,
    /// (version of the last update, trader): the eviction order of `pnl`.
    pnl_lru: BTreeMap<u64, String>,
    /// Every partition's latest P&L totals, and the ranking they make (with its version).
    totals: Leaderboard,
    leaderboard: Option<(u64, LeaderboardMessage)>,
    counts: FeedCounts,
}

/// Statuses of an order that is still live (it can trade, be cancelled or amended):
/// `GET /orders?status=open`.
pub const OPEN_STATUSES: [&str; 4] = ["ACCEPTED", "NEW", "PARTIALLY_FILLED", "AMENDED"];

fn is_open(status: &str) -> bool {
    OPEN_STATUSES.contains(&status)
}

/// An order's last status, with when it was first seen.
#[derive(Debug)]
struct KeptOrder {
    /// The state's order sequence number when the order was first seen: its place in its
    /// trader's list.
    seq: u64,
    event: OrderEventMessage,
}

/// The kept orders by trader (`GET /orders`): two B-trees over all traders keyed by (trader
/// number, first-seen sequence number), so a trader with one order costs an entry, not a tree of
/// its own. Every kept order is under the trader of its kept status, nothing else is, and a trader
/// keeps its number only while it has kept orders: the index is bounded by the orders it indexes.
#[derive(Debug, Default)]
struct OrderIndex {
    /// trader → (its number, how many kept orders it has).
    traders: BTreeMap<String, (u64, usize)>,
    /// The last trader number given.
    last_trader: u64,
    /// (trader number, first-seen sequence number) → order id: each trader's orders, oldest first.
    all: BTreeMap<(u64, u64), u64>,
    /// The keys of `all` whose order's last status is open.
    open: BTreeSet<(u64, u64)>,
}

impl OrderIndex {
    /// Adds order `id`, first seen as number `seq`, to `trader`'s.
    fn insert(&mut self, trader: &str, seq: u64, id: u64, open: bool) {
        let number = match self.traders.get_mut(trader) {
            Some((number, count)) => {
                *count += 1;
                *number
            }
            None => {
                self.last_trader += 1;
                self.traders
                    .insert(trader.to_string(), (self.last_trader, 1));
                self.last_trader
            }
        };
        self.all.insert((number, seq), id);
        if open {
            self.open.insert((number, seq));
        }
    }

    /// Removes the order first seen as number `seq` from `trader`'s.
    fn remove(&mut self, trader: &str, seq: u64) {
        let Some((number, count)) = self.traders.get_mut(trader) else {
            return;
        };
        let key = (*number, seq);
        if self.all.remove(&key).is_some() {
            *count -= 1;
        }
        self.open.remove(&key);
        if *count == 0 {
            self.traders.remove(trader);
        }
    }

    /// Marks `trader`'s order `seq` open or not.
    fn set_open(&mut self, trader: &str, seq: u64, open: bool) {
        if let Some((number, _)) = self.traders.get(trader) {
            if open {
                self.open.insert((*number, seq));
            } else {
                self.open.remove(&(*number, seq));
            }
        }
    }

    /// The ids of `trader`'s orders (only the open ones with `open_only`), newest first, at
    /// most `limit`.
    fn newest(&self, trader: &str, limit: usize, open_only: bool) -> Vec<u64> {
        let Some((number, _)) = self.traders.get(trader) else {
            return Vec::new();
        };
        let range = (*number, 0)..=(*number, u64::MAX);
        if open_only {
            self.open
                .range(range)
                .rev()
                .filter_map(|k| self.all.get(k).copied())
                .take(limit)
                .collect()
        } else {
            self.all
                .range(range)
                .rev()
                .map(|(_, id)| *id)
                .take(limit)
                .collect()
        }
    }
}

/// One kept trader's P&L.
#[derive(Debug)]
struct TraderPnl {
    /// The version of its last update (its key in `pnl_lru`).
    version: u64,
    /// instrument → latest P&L row.
    rows: BTreeMap<String, PnlMessage>,
    /// Total P&L after each window with a row, oldest first, at most `Limits::pnl_history`.
    history: VecDeque<PnlPoint>,
}

/// Appends the total P&L as of window end `end_ms` to `history` (at most `cap` points). A row of
/// a window before the newest point (an instrument whose trades partition lags behind) changes
/// the total as of the newest point, which it updates: the times only ever increase.
fn record_point(history: &mut VecDeque<PnlPoint>, end_ms: i64, total: Decimal, cap: usize) {
    if let Some(last) = history.back_mut() {
        if last.end_ms >= end_ms {
            last.total = total;
            return;
        }
    }
    if history.len() >= cap {
        history.pop_front();
    }
    if history.len() == history.capacity() {
        // Grows by doubling, but never beyond the cap (a full history is exactly `cap` points).
        history.reserve_exact(history.len().max(4).min(cap - history.len()).max(1));
    }
    history.push_back(PnlPoint { end_ms, total });
}

/// An instrument in the instrument list, with its session figures.
#[derive(Clone, Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct InstrumentSummary {
    #[schema(schema_with = crate::wire::schema::identifier)]
    pub symbol: String,
    pub name: String,
    #[serde(with = "json_decimal")]
    #[schema(schema_with = crate::wire::schema::decimal)]
    pub tick_size: Decimal,
    #[serde(with = "json_decimal")]
    #[schema(schema_with = crate::wire::schema::decimal)]
    pub lot_size: Decimal,
    #[serde(with = "json_decimal::option")]
    #[schema(schema_with = crate::wire::schema::decimal_or_null)]
    pub last: Option<Decimal>,
    #[serde(with = "json_decimal::option")]
    #[schema(schema_with = crate::wire::schema::decimal_or_null)]
    pub best_bid: Option<Decimal>,
    #[serde(with = "json_decimal::option")]
    #[schema(schema_with = crate::wire::schema::decimal_or_null)]
    pub best_ask: Option<Decimal>,
    pub trades: u64,
    #[serde(with = "json_decimal")]
    #[schema(schema_with = crate::wire::schema::decimal)]
    pub volume: Decimal,
    /// The `orders` partition the instrument's orders must be produced to (set by the API).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
}

/// The top of one instrument's book, with spread and mid.
#[derive(Clone, Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct BookView {
    #[schema(schema_with = crate::wire::schema::identifier)]
    pub instrument: String,
    pub bids: Vec<LevelMessage>,
    pub asks: Vec<LevelMessage>,
    #[serde(with = "json_decimal::option")]
    #[schema(schema_with = crate::wire::schema::decimal_or_null)]
    pub spread: Option<Decimal>,
    #[serde(with = "json_decimal::option")]
    #[schema(schema_with = crate::wire::schema::decimal_or_null)]
    pub mid: Option<Decimal>,
    /// Offset of the `orders` message after which this book was taken (-1: no book yet).
    pub as_of_offset: i64,
    pub ts_ms: i64,
}

/// A closed bar with the SMAs computed at its close (empty until the SMA calculator's point
/// for that window arrives).
#[derive(Clone, Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct BarView {
    #[serde(flatten)]
    pub bar: BarMessage,
    pub sma: Vec<SmaValue>,
}

/// A trader's positions and totals.
#[derive(Clone, Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct PnlView {
    #[schema(schema_with = crate::wire::schema::identifier)]
    pub trader: String,
    pub positions: Vec<PnlMessage>,
    #[serde(with = "json_decimal")]
    #[schema(schema_with = crate::wire::schema::decimal)]
    pub realized: Decimal,
    #[serde(with = "json_decimal")]
    #[schema(schema_with = crate::wire::schema::decimal)]
    pub unrealized: Decimal,
    #[serde(with = "json_decimal")]
    #[schema(schema_with = crate::wire::schema::decimal)]
    pub total: Decimal,
}

/// One point of a trader's P&L history: the trader's total P&L (realized + unrealized, summed
/// over instruments, as in `GET /pnl/{trader}`) after the analytics window ending at `end_ms`.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct PnlPoint {
    pub end_ms: i64,
    #[serde(with = "json_decimal")]
    #[schema(schema_with = crate::wire::schema::decimal)]
    pub total: Decimal,
}

/// A trader's P&L over time.
#[derive(Clone, Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct PnlHistory {
    #[schema(schema_with = crate::wire::schema::identifier)]
    pub trader: String,
    /// One point per analytics window in which the trader traded, oldest first (the last is the
    /// total of `GET /pnl/{trader}`).
    pub points: Vec<PnlPoint>,
}

/// What changed for one instrument since a client's version.
#[derive(Clone, Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Delta {
    /// The version the client has now seen.
    pub version: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub book: Option<BookView>,
    /// New trades, oldest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trades: Vec<TradeMessage>,
    /// New or changed bars, oldest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bars: Vec<BarView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leaderboard: Option<LeaderboardMessage>,
    /// The instrument list, when any instrument's figures changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instruments: Option<Vec<InstrumentSummary>>,
}

impl Delta {
    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.book.is_none()
            && self.trades.is_empty()
            && self.bars.is_empty()
            && self.leaderboard.is_none()
            && self.instruments.is_none()
    }
}

/// Inserts into a bounded, end-ordered map, forgetting the oldest entries.
fn insert_bounded<T>(
    map: &mut BTreeMap<i64, (u64, T)>,
    key: i64,
    version: u64,
    value: T,
    cap: usize,
) {
    map.insert(key, (version, value));
    while map.len() > cap {
        map.pop_first();
    }
}

impl MarketState {
    /// An empty state for the instruments of `table`.
    pub fn new(table: &Instruments, limits: Limits) -> Self {
        let instruments: Vec<InstrumentState> = table
            .ids()
            .map(|id| {
                let spec = table.spec(id);
                InstrumentState {
                    symbol: spec.symbol.clone(),
                    name: spec.name.clone(),
                    tick_size: spec.tick_size,
                    lot_size: spec.lot_size,
                    book: None,
                    book_version: 0,
                    trades: VecDeque::new(),
                    trade_count: 0,
                    volume: Decimal::ZERO,
                    bars: BTreeMap::new(),
                    smas: BTreeMap::new(),
                    version: 0,
                }
            })
            .collect();
        let by_symbol = instruments
            .iter()
            .enumerate()
            .map(|(i, s)| (s.symbol.clone(), i))
            .collect();
        MarketState {
            limits,
            version: 0,
            instruments,
            by_symbol,
            orders: BTreeMap::new(),
            order_fifo: VecDeque::new(),
            order_seq: 0,
            orders_by_trader: OrderIndex::default(),
            pnl: BTreeMap::new(),
            pnl_lru: BTreeMap::new(),
            totals: Leaderboard::default(),
            leaderboard: None,
            counts: FeedCounts::default(),
        }
    }

    /// The current version (increases with every applied message).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// What the state was fed so far.
    pub fn counts(&self) -> FeedCounts {
        self.counts
    }

    /// Counts a message that could not be decoded.
    pub fn count_undecodable(&mut self) {
        self.counts.undecodable += 1;
    }

    fn instrument_mut(&mut self, symbol: &str) -> Option<&mut InstrumentState> {
        let i = *self.by_symbol.get(symbol)?;
        self.instruments.get_mut(i)
    }

    fn bump(&mut self) -> u64 {
        self.version += 1;
        self.version
    }

    /// Applies a `book` message (the latest top-5 replaces the previous one).
    pub fn apply_book(&mut self, book: BookMessage) {
        self.counts.book += 1;
        let v = self.bump();
        if let Some(s) = self.instrument_mut(&book.instrument) {
            s.book = Some(book);
            s.book_version = v;
            s.version = v;
        }
    }

    /// Applies a `trades` message.
    pub fn apply_trade(&mut self, trade: TradeMessage) {
        self.counts.trades += 1;
        let v = self.bump();
        let cap = self.limits.trades;
        if let Some(s) = self.instrument_mut(&trade.instrument) {
            s.trade_count += 1;
            s.volume += trade.quantity;
            s.trades.push_back((v, trade));
            while s.trades.len() > cap {
                s.trades.pop_front();
            }
            s.version = v;
        }
    }

    /// Applies an `order-events` message: the order's latest status. A reject naming an order
    /// that is already known is a refused command about it — a duplicate new order (a retried
    /// request that raced the first), or a cancel or amend, possibly by another trader — and never
    /// replaces its status (a retry must not make the original look rejected, nor another
    /// trader's refused cancel make it theirs).
    pub fn apply_order_event(&mut self, event: OrderEventMessage) {
        self.counts.order_events += 1;
        self.bump();
        let id = event.order_id;
        let open = is_open(&event.status);
        if let Some(kept) = self.orders.get_mut(&id) {
            if event.status == "REJECTED" {
                return;
            }
            let seq = kept.seq;
            if kept.event.trader != event.trader {
                // Only after a first event that was another trader's reject (e.g. a cancel that
                // arrived before the order): the order is its owner's.
                self.orders_by_trader.remove(&kept.event.trader, seq);
                self.orders_by_trader.insert(&event.trader, seq, id, open);
            } else if open != is_open(&kept.event.status) {
                self.orders_by_trader.set_open(&event.trader, seq, open);
            }
            kept.event = event;
            return;
        }
        self.order_seq += 1;
        let seq = self.order_seq;
        self.orders_by_trader.insert(&event.trader, seq, id, open);
        self.orders.insert(id, KeptOrder { seq, event });
        self.order_fifo.push_back(id);
        while self.order_fifo.len() > self.limits.orders {
            let Some(old) = self.order_fifo.pop_front() else {
                break;
            };
            if let Some(gone) = self.orders.remove(&old) {
                self.orders_by_trader.remove(&gone.event.trader, gone.seq);
            }
        }
    }

    /// Applies a bar from `analytics`.
    pub fn apply_bar(&mut self, bar: BarMessage) {
        self.counts.analytics += 1;
        let v = self.bump();
        let cap = self.limits.bars;
        if let Some(s) = self.instrument_mut(&bar.instrument) {
            insert_bounded(&mut s.bars, bar.end_ms, v, bar, cap);
        }
    }

    /// Applies an SMA point from `analytics`.
    pub fn apply_sma(&mut self, sma: SmaMessage) {
        self.counts.analytics += 1;
        let v = self.bump();
        let cap = self.limits.bars;
        if let Some(s) = self.instrument_mut(&sma.instrument) {
            insert_bounded(&mut s.smas, sma.end_ms, v, sma, cap);
        }
    }

    /// Applies a P&L row from `analytics`: the trader's row for the instrument, and the trader's
    /// new total as a point of its history.
    pub fn apply_pnl(&mut self, pnl: PnlMessage) {
        self.counts.analytics += 1;
        let v = self.bump();
        let cap = self.limits.pnl_history.max(1);
        let entry = match self.pnl.get_mut(&pnl.trader) {
            Some(entry) => entry,
            None => self.pnl.entry(pnl.trader.clone()).or_insert(TraderPnl {
                version: 0,
                rows: BTreeMap::new(),
                history: VecDeque::new(),
            }),
        };
        if entry.version != 0 {
            self.pnl_lru.remove(&entry.version);
        }
        entry.version = v;
        self.pnl_lru.insert(v, pnl.trader.clone());
        let end_ms = pnl.end_ms;
        entry.rows.insert(pnl.instrument.clone(), pnl);
        let total = entry.rows.values().map(|r| r.total).sum();
        record_point(&mut entry.history, end_ms, total, cap);
        while self.pnl.len() > self.limits.pnl_traders {
            let Some((_, trader)) = self.pnl_lru.pop_first() else {
                break;
            };
            self.pnl.remove(&trader);
        }
    }

    /// Applies a partition's P&L totals from `analytics`: the leaderboard is their combination.
    pub fn apply_totals(&mut self, totals: TotalsMessage) {
        // One entry per trades partition is kept: a partition number no deployment has is not a
        // partition's totals (and would grow the map without bound).
        if !(0..MAX_TOTALS_PARTITIONS).contains(&totals.partition) {
            self.counts.undecodable += 1;
            return;
        }
        self.counts.analytics += 1;
        if self.totals.apply(totals) {
            let v = self.bump();
            self.leaderboard = self.totals.board(LEADERBOARD_SIZE).map(|b| (v, b));
        }
    }

    /// Whether `symbol` is a configured instrument.
    pub fn knows_instrument(&self, symbol: &str) -> bool {
        self.by_symbol.contains_key(symbol)
    }

    fn instrument(&self, symbol: &str) -> Option<&InstrumentState> {
        self.instruments.get(*self.by_symbol.get(symbol)?)
    }

    /// The instrument list with session figures, in table order.
    pub fn instruments(&self) -> Vec<InstrumentSummary> {
        self.instruments
            .iter()
            .map(|s| {
                let top = |side: fn(&BookMessage) -> &Vec<LevelMessage>| {
                    s.book
                        .as_ref()
                        .and_then(|b| side(b).first())
                        .map(|l| l.price)
                };
                InstrumentSummary {
                    symbol: s.symbol.clone(),
                    name: s.name.clone(),
                    tick_size: s.tick_size,
                    lot_size: s.lot_size,
                    last: s.trades.back().map(|(_, t)| t.price),
                    best_bid: top(|b| &b.bids),
                    best_ask: top(|b| &b.asks),
                    trades: s.trade_count,
                    volume: s.volume,
                    partition: None,
                }
            })
            .collect()
    }

    /// The top `depth` levels of `symbol`'s book (None: unknown instrument).
    pub fn book(&self, symbol: &str, depth: usize) -> Option<BookView> {
        let s = self.instrument(symbol)?;
        let (bids, asks, as_of_offset, ts_ms) = match &s.book {
            Some(b) => (
                b.bids.iter().take(depth).cloned().collect::<Vec<_>>(),
                b.asks.iter().take(depth).cloned().collect::<Vec<_>>(),
                b.as_of_offset,
                b.ts_ms,
            ),
            None => (Vec::new(), Vec::new(), -1, 0),
        };
        let (spread, mid) = match (bids.first(), asks.first()) {
            (Some(b), Some(a)) => (
                Some(a.price - b.price),
                Some(((a.price + b.price) / Decimal::TWO).normalize()),
            ),
            _ => (None, None),
        };
        Some(BookView {
            instrument: s.symbol.clone(),
            bids,
            asks,
            spread,
            mid,
            as_of_offset,
            ts_ms,
        })
    }

    /// The last `limit` trades of `symbol`, newest first.
    pub fn trades(&self, symbol: &str, limit: usize) -> Option<Vec<TradeMessage>> {
        let s = self.instrument(symbol)?;
        Some(
            s.trades
                .iter()
                .rev()
                .take(limit)
                .map(|(_, t)| t.clone())
                .collect(),
        )
    }

    fn bar_view(s: &InstrumentState, bar: &BarMessage) -> BarView {
        BarView {
            bar: bar.clone(),
            sma: s
                .smas
                .get(&bar.end_ms)
                .map(|(_, m)| m.sma.clone())
                .unwrap_or_default(),
        }
    }

    /// The last `limit` bars of `symbol` with their SMAs, oldest first.
    pub fn bars(&self, symbol: &str, limit: usize) -> Option<Vec<BarView>> {
        let s = self.instrument(symbol)?;
        let skip = s.bars.len().saturating_sub(limit);
        Some(
            s.bars
                .values()
                .skip(skip)
                .map(|(_, b)| Self::bar_view(s, b))
                .collect(),
        )
    }

    /// A trader's positions (by instrument) and totals (None: no P&L seen for the trader).
    pub fn pnl(&self, trader: &str) -> Option<PnlView> {
        let positions: Vec<PnlMessage> = self.pnl.get(trader)?.rows.values().cloned().collect();
        let sum = |f: fn(&PnlMessage) -> Decimal| positions.iter().map(f).sum::<Decimal>();
        Some(PnlView {
            trader: trader.to_string(),
            realized: sum(|p| p.realized),
            unrealized: sum(|p| p.unrealized),
            total: sum(|p| p.total),
            positions,
        })
    }

    /// The last `limit` points of a trader's P&L history, oldest first (None: no P&L seen for
    /// the trader).
    pub fn pnl_history(&self, trader: &str, limit: usize) -> Option<PnlHistory> {
        let history = &self.pnl.get(trader)?.history;
        let skip = history.len().saturating_sub(limit);
        Some(PnlHistory {
            trader: trader.to_string(),
            points: history.iter().skip(skip).copied().collect(),
        })
    }

    /// The latest leaderboard.
    pub fn leaderboard(&self) -> Option<&LeaderboardMessage> {
        self.leaderboard.as_ref().map(|(_, b)| b)
    }

    /// The last known status of order `id`.
    pub fn order(&self, id: u64) -> Option<&OrderEventMessage> {
        self.orders.get(&id).map(|k| &k.event)
    }

    /// The last known statuses of `trader`'s kept orders, newest (first seen last) first, at
    /// most `limit`; with `open_only`, only the orders whose status is one of [`OPEN_STATUSES`].
    /// Costs O(`limit` × log orders) either way.
    pub fn orders_of(&self, trader: &str, limit: usize, open_only: bool) -> Vec<OrderEventMessage> {
        self.orders_by_trader
            .newest(trader, limit, open_only)
            .iter()
            .filter_map(|id| self.orders.get(id).map(|k| k.event.clone()))
            .collect()
    }

    /// What changed for `symbol` since version `seen` (`seen` = 0: a full snapshot).
    /// None for an unknown instrument.
    pub fn delta(&self, symbol: &str, seen: u64) -> Option<Delta> {
        let s = self.instrument(symbol)?;
        let book = (s.book_version > seen || seen == 0)
            .then(|| self.book(symbol, usize::MAX))
            .flatten();
        let trades = s
            .trades
            .iter()
            .filter(|(v, _)| *v > seen)
            .map(|(_, t)| t.clone())
            .collect();
        // A bar changes when it or its SMA point does.
        let bars = s
            .bars
            .iter()
            .filter(|(end, (v, _))| *v > seen || s.smas.get(end).is_some_and(|(sv, _)| *sv > seen))
            .map(|(_, (_, b))| Self::bar_view(s, b))
            .collect();
        let leaderboard = self
            .leaderboard
            .as_ref()
            .filter(|(v, _)| *v > seen)
            .map(|(_, b)| b.clone());
        let instruments = self
            .instruments
            .iter()
            .any(|i| i.version > seen)
            .then(|| self.instruments());
        Some(Delta {
            version: self.version,
            book,
            trades,
            bars,
            leaderboard,
            instruments,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_instruments;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn level(p: &str, q: &str) -> LevelMessage {
        LevelMessage {
            price: d(p),
            quantity: d(q),
            orders: 1,
        }
    }

    fn book(sym: &str, bids: Vec<LevelMessage>, asks: Vec<LevelMessage>) -> BookMessage {
        BookMessage {
            instrument: sym.into(),
            bids,
            asks,
            partition: 0,
            as_of_offset: 7,
            ts_ms: 1,
        }
    }

    fn trade(sym: &str, id: u64, price: &str, qty: &str) -> TradeMessage {
        TradeMessage {
            trade_id: id,
            instrument: sym.into(),
            price: d(price),
            quantity: d(qty),
            buyer: "A".into(),
            seller: "B".into(),
            buy_order_id: 1,
            sell_order_id: 2,
            aggressor: "BUY".into(),
            ts_ms: 0,
        }
    }

    /// A P&L row of one unit bought at 1, with `realized` and `unrealized` P&L.
    fn pnl_row(trader: &str, inst: &str, realized: &str, unrealized: &str) -> PnlMessage {
        PnlMessage {
            kind: "pnl".into(),
            trader: trader.into(),
            instrument: inst.into(),
            end_ms: 0,
            position: d("1"),
            avg_price: d("1"),
            realized: d(realized),
            unrealized: d(unrealized),
            total: d(realized) + d(unrealized),
            mark: d("1"),
            mark_sma: None,
            unrealized_sma: None,
            volume: d("1"),
            notional: d("1"),
            window_bought: d("1"),
            window_sold: d("0"),
        }
    }

    fn bar(sym: &str, end: i64, close: &str) -> BarMessage {
        BarMessage {
            kind: "bar".into(),
            instrument: sym.into(),
            start_ms: end - 1000,
            end_ms: end,
            open: d(close),
            high: d(close),
            low: d(close),
            close: d(close),
            volume: d("1"),
            vwap: d(close),
            trades: 1,
        }
    }

    fn state(limits: Limits) -> MarketState {
        MarketState::new(&load_instruments(None).unwrap(), limits)
    }

    #[test]
    fn book_view_has_spread_mid_and_depth_limit() {
        let mut s = state(Limits::default());
        s.apply_book(book(
            "TCS",
            vec![level("15.00", "10"), level("14.95", "3")],
            vec![level("15.05", "4")],
        ));
        let v = s.book("TCS", 1).unwrap();
        assert_eq!(v.bids, vec![level("15.00", "10")]);
        assert_eq!((v.spread, v.mid), (Some(d("0.05")), Some(d("15.025"))));
        assert_eq!(s.book("TCS", 5).unwrap().bids.len(), 2);
        assert!(s.book("NOPE", 5).is_none());
        let empty = s.book("INFY", 5).unwrap();
        assert!(empty.bids.is_empty() && empty.spread.is_none() && empty.as_of_offset == -1);
        // Unknown instruments in the feed are ignored, not stored.
        s.apply_book(book("NOPE", vec![], vec![]));
        assert!(!s.knows_instrument("NOPE"));
    }

    #[test]
    fn tape_is_bounded_newest_first_and_counts_the_session() {
        let mut s = state(Limits {
            trades: 3,
            ..Limits::default()
        });
        for i in 1..=5 {
            s.apply_trade(trade("TCS", i, &format!("1{i}"), "2"));
        }
        let ids: Vec<u64> = s
            .trades("TCS", 10)
            .unwrap()
            .iter()
            .map(|t| t.trade_id)
            .collect();
        assert_eq!(ids, vec![5, 4, 3]);
        assert_eq!(s.trades("TCS", 1).unwrap().len(), 1);
        let tcs = &s.instruments()[0];
        assert_eq!(
            (tcs.trades, tcs.volume, tcs.last),
            (5, d("10"), Some(d("15")))
        );
    }

    #[test]
    fn bars_join_their_sma_points_and_are_bounded() {
        let mut s = state(Limits {
            bars: 2,
            ..Limits::default()
        });
        for end in [1000, 2000, 3000] {
            s.apply_bar(bar("TCS", end, "10"));
        }
        s.apply_sma(SmaMessage {
            kind: "sma".into(),
            instrument: "TCS".into(),
            end_ms: 3000,
            close: d("10"),
            sma: vec![SmaValue {
                n: 5,
                value: Some(d("9.5")),
            }],
        });
        let bars = s.bars("TCS", 10).unwrap();
        assert_eq!(
            bars.iter().map(|b| b.bar.end_ms).collect::<Vec<_>>(),
            vec![2000, 3000]
        );
        assert!(bars[0].sma.is_empty());
        assert_eq!(bars[1].sma[0].value, Some(d("9.5")));
        // A re-emitted bar for the same window replaces the old one.
        s.apply_bar(bar("TCS", 3000, "11"));
        assert_eq!(s.bars("TCS", 1).unwrap()[0].bar.close, d("11"));
    }

    #[test]
    fn orders_keep_the_last_status_and_forget_the_oldest() {
        let mut s = state(Limits {
            orders: 2,
            ..Limits::default()
        });
        let ev = |id, status: &str| OrderEventMessage {
            order_id: id,
            trader: "T1".into(),
            instrument: "TCS".into(),
            status: status.into(),
            reason: None,
            side: None,
            price: None,
            quantity: None,
            filled: None,
            leaves: None,
            last_price: None,
            last_quantity: None,
            command: None,
            order_type: None,
            time_in_force: None,
            ts_ms: 0,
        };
        s.apply_order_event(ev(1, "ACCEPTED"));
        s.apply_order_event(ev(1, "FILLED"));
        s.apply_order_event(ev(2, "ACCEPTED"));
        assert_eq!(s.order(1).unwrap().status, "FILLED");
        s.apply_order_event(ev(3, "ACCEPTED"));
        assert!(s.order(1).is_none());
        assert!(s.order(2).is_some() && s.order(3).is_some());
        // A duplicate-id reject (a retried request) never replaces the owner's status...
        let dup = OrderEventMessage {
            reason: Some("duplicate_order_id".into()),
            ..ev(3, "REJECTED")
        };
        s.apply_order_event(dup.clone());
        assert_eq!(s.order(3).unwrap().status, "ACCEPTED");
        // ...but is the status of an id nobody else holds here.
        s.apply_order_event(OrderEventMessage { order_id: 9, ..dup });
        assert_eq!(s.order(9).unwrap().status, "REJECTED");
    }

    /// An order status event of `trader`.
    fn order_ev(id: u64, trader: &str, status: &str) -> OrderEventMessage {
        OrderEventMessage {
            order_id: id,
            trader: trader.into(),
            instrument: "TCS".into(),
            status: status.into(),
            reason: None,
            side: Some("BUY".into()),
            price: Some(d("15")),
            quantity: Some(d("1")),
            filled: None,
            leaves: None,
            last_price: None,
            last_quantity: None,
            command: None,
            order_type: None,
            time_in_force: None,
            ts_ms: 0,
        }
    }

    fn ids(orders: &[OrderEventMessage]) -> Vec<u64> {
        orders.iter().map(|o| o.order_id).collect()
    }

    /// The per-trader index holds exactly the kept orders, each under its kept status's trader,
    /// with the open ones marked, and no trader without orders.
    fn assert_index_consistent(s: &MarketState) {
        let index = &s.orders_by_trader;
        let mut per_number: BTreeMap<u64, usize> = BTreeMap::new();
        for ((number, seq), id) in &index.all {
            let kept = &s.orders[id];
            assert_eq!(kept.seq, *seq);
            assert_eq!(index.traders[&kept.event.trader].0, *number);
            assert_eq!(
                index.open.contains(&(*number, *seq)),
                is_open(&kept.event.status)
            );
            *per_number.entry(*number).or_default() += 1;
        }
        assert!(index.open.iter().all(|k| index.all.contains_key(k)));
        // Every trader kept has orders, and their count.
        assert_eq!(index.traders.len(), per_number.len());
        for (trader, (number, count)) in &index.traders {
            assert_eq!(per_number.get(number), Some(count), "{trader}");
        }
        assert_eq!(index.all.len(), s.orders.len());
        assert_eq!(s.order_fifo.len(), s.orders.len());
        assert!(s.orders.len() <= s.limits.orders);
    }

    #[test]
    fn orders_are_listed_per_trader_newest_first_and_leave_with_their_eviction() {
        let mut s = state(Limits {
            orders: 3,
            ..Limits::default()
        });
        // Ids are not in time order (the API's are random): the list is in the order seen.
        s.apply_order_event(order_ev(30, "T1", "NEW"));
        s.apply_order_event(order_ev(20, "T2", "NEW"));
        s.apply_order_event(order_ev(10, "T1", "ACCEPTED"));
        assert_eq!(ids(&s.orders_of("T1", 100, false)), vec![10, 30]);
        assert_eq!(ids(&s.orders_of("T2", 100, false)), vec![20]);
        assert_eq!(ids(&s.orders_of("T1", 1, false)), vec![10]);
        assert!(s.orders_of("T3", 100, false).is_empty());
        // Statuses change in place; `open_only` follows them.
        s.apply_order_event(order_ev(30, "T1", "PARTIALLY_FILLED"));
        s.apply_order_event(order_ev(10, "T1", "FILLED"));
        let t1 = s.orders_of("T1", 100, false);
        assert_eq!(ids(&t1), vec![10, 30]);
        assert_eq!(
            (t1[0].status.as_str(), t1[1].status.as_str()),
            ("FILLED", "PARTIALLY_FILLED")
        );
        assert_eq!(ids(&s.orders_of("T1", 100, true)), vec![30]);
        s.apply_order_event(order_ev(30, "T1", "CANCELLED"));
        assert!(s.orders_of("T1", 100, true).is_empty());
        assert_index_consistent(&s);
        // Past the cap the oldest order goes, from its trader's list too, and a trader with it.
        s.apply_order_event(order_ev(40, "T3", "NEW"));
        assert_eq!(ids(&s.orders_of("T1", 100, false)), vec![10]);
        s.apply_order_event(order_ev(50, "T3", "NEW"));
        assert!(s.orders_of("T2", 100, false).is_empty());
        assert!(!s.orders_by_trader.traders.contains_key("T2"));
        s.apply_order_event(order_ev(60, "T3", "NEW"));
        assert!(!s.orders_by_trader.traders.contains_key("T1"));
        assert_eq!(ids(&s.orders_of("T3", 100, true)), vec![60, 50, 40]);
        assert_eq!(ids(&s.orders_of("T3", 2, true)), vec![60, 50]);
        assert_index_consistent(&s);
    }

    #[test]
    fn a_refused_command_never_replaces_an_orders_status_nor_its_owner() {
        let mut s = state(Limits::default());
        s.apply_order_event(order_ev(5, "T1", "NEW"));
        // Another trader's cancel, refused by the engine (the server had not seen the order).
        let refused = |id, trader: &str, reason: &str| OrderEventMessage {
            reason: Some(reason.into()),
            side: None,
            price: None,
            quantity: None,
            ..order_ev(id, trader, "REJECTED")
        };
        s.apply_order_event(refused(5, "T2", "not_order_owner"));
        // The owner's amend that would have crossed, refused: the order still rests.
        s.apply_order_event(refused(5, "T1", "post_only_would_cross"));
        assert_eq!(
            (
                s.order(5).unwrap().status.as_str(),
                s.order(5).unwrap().trader.as_str()
            ),
            ("NEW", "T1")
        );
        assert!(s.orders_of("T2", 100, false).is_empty());
        assert_eq!(ids(&s.orders_of("T1", 100, true)), vec![5]);
        // A cancel that arrived before its order: the id is first seen as the canceller's
        // reject, then becomes its owner's.
        s.apply_order_event(refused(7, "T2", "unknown_order"));
        assert_eq!(ids(&s.orders_of("T2", 100, false)), vec![7]);
        s.apply_order_event(order_ev(7, "T1", "ACCEPTED"));
        assert!(s.orders_of("T2", 100, false).is_empty());
        assert_eq!(ids(&s.orders_of("T1", 100, true)), vec![7, 5]);
        assert_index_consistent(&s);
    }

    #[test]
    fn the_order_index_stays_within_the_cap_under_churn() {
        let cap = 50;
        let mut s = state(Limits {
            orders: cap,
            ..Limits::default()
        });
        // A deterministic mix: new orders of 7 traders, status changes of recent ones, rejects.
        let statuses = [
            "ACCEPTED",
            "NEW",
            "PARTIALLY_FILLED",
            "FILLED",
            "CANCELLED",
            "AMENDED",
        ];
        let mut x: u64 = 12345;
        for step in 0..5_000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let r = x >> 33;
            let id = if r.is_multiple_of(3) {
                step
            } else {
                step.saturating_sub(r % 60)
            };
            let trader = format!("T{}", (id * 7 + r % 2) % 7);
            let status = if r.is_multiple_of(11) {
                "REJECTED"
            } else {
                statuses[(r % 6) as usize]
            };
            s.apply_order_event(order_ev(id, &trader, status));
            if step % 97 == 0 {
                assert_index_consistent(&s);
            }
        }
        assert_index_consistent(&s);
        assert_eq!(s.orders.len(), cap);
        let listed: usize = (0..7)
            .map(|t| s.orders_of(&format!("T{t}"), usize::MAX, false).len())
            .sum();
        assert_eq!(listed, cap);
    }

    #[test]
    fn pnl_history_records_the_total_per_window_and_is_bounded() {
        let mut s = state(Limits {
            pnl_history: 3,
            ..Limits::default()
        });
        let row = |trader: &str, inst: &str, end_ms: i64, realized: &str| PnlMessage {
            end_ms,
            ..pnl_row(trader, inst, realized, "0")
        };
        let points = |s: &MarketState, trader: &str| -> Vec<(i64, Decimal)> {
            s.pnl_history(trader, usize::MAX)
                .unwrap()
                .points
                .iter()
                .map(|p| (p.end_ms, p.total))
                .collect()
        };
        s.apply_pnl(row("A", "TCS", 1000, "1"));
        s.apply_pnl(row("B", "TCS", 1000, "-5"));
        // Two instruments closing the same window: one point, the sum.
        s.apply_pnl(row("A", "INFY", 1000, "2"));
        assert_eq!(points(&s, "A"), vec![(1000, d("3"))]);
        s.apply_pnl(row("A", "TCS", 2000, "4"));
        assert_eq!(points(&s, "A"), vec![(1000, d("3")), (2000, d("6"))]);
        // A row of an earlier window (its partition lagging) updates the newest point.
        s.apply_pnl(row("A", "INFY", 1500, "0"));
        assert_eq!(points(&s, "A"), vec![(1000, d("3")), (2000, d("4"))]);
        // Bounded: the oldest point goes.
        s.apply_pnl(row("A", "TCS", 3000, "5"));
        s.apply_pnl(row("A", "TCS", 4000, "7"));
        assert_eq!(
            points(&s, "A"),
            vec![(2000, d("4")), (3000, d("5")), (4000, d("7"))]
        );
        let a = &s.pnl["A"].history;
        assert!(a.capacity() <= 4, "{} points of room", a.capacity());
        // The newest point is the total `GET /pnl` shows; the limit takes the newest points.
        assert_eq!(s.pnl("A").unwrap().total, d("7"));
        assert_eq!(
            s.pnl_history("A", 1).unwrap().points,
            vec![PnlPoint {
                end_ms: 4000,
                total: d("7")
            }]
        );
        // Each trader has their own.
        assert_eq!(points(&s, "B"), vec![(1000, d("-5"))]);
        assert!(s.pnl_history("C", 10).is_none());
    }

    #[test]
    fn pnl_history_is_forgotten_with_its_trader() {
        let mut s = state(Limits {
            pnl_traders: 2,
            pnl_history: 600,
            ..Limits::default()
        });
        for end in 1..=10 {
            s.apply_pnl(PnlMessage {
                end_ms: end * 1000,
                ..pnl_row("A", "TCS", "1", "0")
            });
        }
        s.apply_pnl(pnl_row("B", "TCS", "1", "0"));
        assert_eq!(s.pnl_history("A", usize::MAX).unwrap().points.len(), 10);
        s.apply_pnl(pnl_row("C", "TCS", "1", "0")); // evicts A, the least recently updated
        assert!(s.pnl_history("A", usize::MAX).is_none() && s.pnl("A").is_none());
        assert!(s.pnl_history("B", 1).is_some() && s.pnl_history("C", 1).is_some());
        // A trader seen again starts a new history.
        s.apply_pnl(pnl_row("A", "TCS", "1", "0"));
        assert_eq!(s.pnl_history("A", usize::MAX).unwrap().points.len(), 1);
    }

    #[test]
    fn pnl_keeps_the_most_recently_updated_traders() {
        let mut s = state(Limits {
            pnl_traders: 2,
            ..Limits::default()
        });
        let row = |trader: &str, inst: &str| pnl_row(trader, inst, "1", "0");
        s.apply_pnl(row("A", "TCS"));
        s.apply_pnl(row("B", "TCS"));
        s.apply_pnl(row("A", "INFY")); // A is now the most recent
        s.apply_pnl(row("C", "TCS")); // evicts B
        assert!(s.pnl("B").is_none());
        assert_eq!(s.pnl("A").unwrap().positions.len(), 2);
        assert!(s.pnl("C").is_some());
        assert_eq!((s.pnl.len(), s.pnl_lru.len()), (2, 2));
    }

    #[test]
    fn delta_sends_a_snapshot_then_only_changes_for_the_instrument() {
        let mut s = state(Limits::default());
        s.apply_book(book("TCS", vec![level("15", "1")], vec![]));
        s.apply_trade(trade("TCS", 1, "15", "1"));
        s.apply_bar(bar("TCS", 1000, "15"));
        let first = s.delta("TCS", 0).unwrap();
        assert!(first.book.is_some() && first.trades.len() == 1 && first.bars.len() == 1);
        assert!(first.instruments.is_some());
        // Nothing new: an empty delta.
        let again = s.delta("TCS", first.version).unwrap();
        assert!(again.is_empty(), "{again:?}");
        // Another instrument's trade changes only the instrument list for a TCS client.
        s.apply_trade(trade("INFY", 2, "20", "1"));
        let other = s.delta("TCS", first.version).unwrap();
        assert!(other.book.is_none() && other.trades.is_empty() && other.bars.is_empty());
        assert_eq!(other.instruments.unwrap()[1].trades, 1);
        // A new SMA point re-sends its bar.
        s.apply_sma(SmaMessage {
            kind: "sma".into(),
            instrument: "TCS".into(),
            end_ms: 1000,
            close: d("15"),
            sma: vec![],
        });
        let sma = s.delta("TCS", other.version).unwrap();
        assert_eq!(sma.bars.len(), 1);
        assert!(s.delta("NOPE", 0).is_none());
    }

    #[test]
    fn pnl_totals_and_the_latest_leaderboard() {
        let mut s = state(Limits::default());
        let row = |inst: &str, realized: &str, unrealized: &str| {
            pnl_row("T1", inst, realized, unrealized)
        };
        s.apply_pnl(row("TCS", "1.5", "-0.25"));
        s.apply_pnl(row("INFY", "2", "1"));
        s.apply_pnl(row("TCS", "3", "0"));
        let p = s.pnl("T1").unwrap();
        assert_eq!(
            (p.realized, p.unrealized, p.total),
            (d("5"), d("1"), d("6"))
        );
        assert!(s.pnl("T2").is_none());
        let totals = |partition, end, trader: &str, total: &str| TotalsMessage {
            kind: "totals".into(),
            end_ms: end,
            partition,
            traders: vec![crate::wire::TraderTotal {
                trader: trader.into(),
                total: d(total),
            }],
        };
        assert!(s.leaderboard().is_none());
        s.apply_totals(totals(0, 2000, "T1", "6"));
        s.apply_totals(totals(1, 1000, "T1", "-1"));
        s.apply_totals(totals(0, 1000, "T1", "100"));
        let board = s.leaderboard().unwrap();
        assert_eq!(board.end_ms, 2000);
        assert_eq!(
            (board.top[0].trader.as_str(), board.top[0].total),
            ("T1", d("5"))
        );
        // A partition number no deployment has is refused, not kept.
        for bad in [-1, MAX_TOTALS_PARTITIONS, i32::MAX] {
            s.apply_totals(totals(bad, 3000, "T1", "1000"));
        }
        assert_eq!(s.counts().undecodable, 3);
        assert_eq!(s.leaderboard().unwrap().top[0].total, d("5"));
    }
}
