//! The serving layer's in-memory market state: the latest top-5 book per instrument, the recent
//! trade tape, bars with their SMAs, positions and the leaderboard, and the last status of every
//! order — all bounded. Pure: it is fed decoded messages and answered queries, and knows nothing of
//! Kafka or HTTP, so it is tested directly.
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
use std::collections::{BTreeMap, HashMap, VecDeque};

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
}

impl Limits {
    /// Measured heap bytes per kept order status (tests/memory.rs checks it).
    pub const BYTES_PER_ORDER: usize = 600;
    /// Measured heap bytes per kept P&L row (one trader × instrument; tests/memory.rs).
    pub const BYTES_PER_PNL_ROW: usize = 1_300;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            trades: 200,
            bars: 720,
            orders: 200_000,
            pnl_traders: 10_000,
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
    orders: BTreeMap<u64, OrderEventMessage>,
    order_fifo: VecDeque<u64>,
    /// trader → (version of its last update, instrument → latest P&L row).
    pnl: BTreeMap<String, (u64, BTreeMap<String, PnlMessage>)>,
    /// (version of the last update, trader): the eviction order of `pnl`.
    pnl_lru: BTreeMap<u64, String>,
    /// Every partition's latest P&L totals, and the ranking they make (with its version).
    totals: Leaderboard,
    leaderboard: Option<(u64, LeaderboardMessage)>,
    counts: FeedCounts,
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

    /// Applies an `order-events` message: the order's latest status. A `duplicate_order_id`
    /// reject names an id that belongs to another (earlier) order: it never replaces that order's
    /// status (a retried request must not make the original look rejected).
    pub fn apply_order_event(&mut self, event: OrderEventMessage) {
        self.counts.order_events += 1;
        self.bump();
        let id = event.order_id;
        if event.reason.as_deref() == Some("duplicate_order_id") && self.orders.contains_key(&id) {
            return;
        }
        if self.orders.insert(id, event).is_none() {
            self.order_fifo.push_back(id);
            while self.order_fifo.len() > self.limits.orders {
                if let Some(old) = self.order_fifo.pop_front() {
                    self.orders.remove(&old);
                }
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

    /// Applies a P&L row from `analytics`.
    pub fn apply_pnl(&mut self, pnl: PnlMessage) {
        self.counts.analytics += 1;
        let v = self.bump();
        let (version, rows) = match self.pnl.get_mut(&pnl.trader) {
            Some(entry) => entry,
            None => self
                .pnl
                .entry(pnl.trader.clone())
                .or_insert((0, BTreeMap::new())),
        };
        if *version != 0 {
            self.pnl_lru.remove(version);
        }
        *version = v;
        self.pnl_lru.insert(v, pnl.trader.clone());
        rows.insert(pnl.instrument.clone(), pnl);
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
        let (_, rows) = self.pnl.get(trader)?;
        let positions: Vec<PnlMessage> = rows.values().cloned().collect();
        let sum = |f: fn(&PnlMessage) -> Decimal| positions.iter().map(f).sum::<Decimal>();
        Some(PnlView {
            trader: trader.to_string(),
            realized: sum(|p| p.realized),
            unrealized: sum(|p| p.unrealized),
            total: sum(|p| p.total),
            positions,
        })
    }

    /// The latest leaderboard.
    pub fn leaderboard(&self) -> Option<&LeaderboardMessage> {
        self.leaderboard.as_ref().map(|(_, b)| b)
    }

    /// The last known status of order `id`.
    pub fn order(&self, id: u64) -> Option<&OrderEventMessage> {
        self.orders.get(&id)
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
