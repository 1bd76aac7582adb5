//! Trader positions and profit and loss, per trader and instrument, with average-cost accounting.
//!
//! Accounting is sequential (it has to be: each fill depends on the position before it), in
//! integers, and exact: quantities in lots, prices in ticks, amounts in ticks × lots, money
//! converted with each instrument's `tick_size × lot_size` only when published (see
//! [`Position`] for the representation and its bounds). Per-window activity (volume, buys,
//! sells, notional, fills per trader and instrument) is accumulated per trade into the open
//! window's counters: the same sums the Polars group-by used to compute, without building a
//! frame of two rows per trade. At each window close the engine reports every trader/instrument
//! that traded in the window, with the position as of the close, and every trader's total P&L
//! (for leaderboards).
//!
//! Average cost: buying into a long (or selling into a short) moves the average price to the
//! quantity-weighted mean; reducing a position realizes `closed qty × (exit − average)` (sign
//! flipped for shorts) and keeps the average; a fill larger than the position closes it and opens
//! the remainder on the other side at the fill price.
//!
//! A [`PnlEngine`] is serde-serializable, so its state can be snapshotted and restored.

use crate::exact::{gcd_u128, gcd_u256, Ratio};
use crate::window::{Clock, WindowSpec};
use crate::TradeRow;
use ethnum::{I256, U256};
use polars::prelude::{polars_err, PolarsResult};
use rust_decimal::Decimal;
use rustc_hash::FxHashMap;
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// Largest denominator of a position's average price, and the grid an average that would need a
/// larger one is rounded to (see [`Position`]): 10^19 (< 2^64).
pub const AVG_DEN_MAX: i128 = 10_000_000_000_000_000_000;

/// Entries of the dense (trader, instrument) → slot table (16 MiB at most).
const DENSE_MAX: usize = 1 << 22;

/// Why a fill could not be applied (the position is left as it was).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FillError {
    #[error("negative fill quantity {0}")]
    NegativeQuantity(i64),
    /// A counter or amount left its integer range (see [`Position`] for the bounds).
    #[error("{0} overflows")]
    Overflow(&'static str),
}

/// One trader's position in one instrument. Quantities in lots, prices in ticks, amounts in
/// ticks × lots (multiply by `tick_size × lot_size` for money).
///
/// ## Representation (exact, integer)
/// - `cash`: Σ sell `qty × price` − Σ buy `qty × price` over every fill, an `i128`.
/// - the average entry price of the open position as a fraction `avg_num / avg_den` (0/1 when
///   flat). While the position has only grown since it opened, this is literally
///   `cost / |quantity|` with `cost` = Σ `qty × price` of the fills that built it. Reducing keeps
///   the average (so the fraction is kept as it is); adding after a reduce gives
///   `(avg × |q| + price × qty) / (|q| + qty)`, computed exactly in 256 bits and reduced to lowest
///   terms.
///
/// Realized P&L is then `cash + quantity × average` and unrealized `quantity × (mark − average)`,
/// both exact rationals ([`realized`](Self::realized), [`unrealized`](Self::unrealized)); total
/// P&L `cash + quantity × mark` is an exact integer ([`total`](Self::total)). Nothing is rounded
/// before publication, where the caller rounds once ([`Ratio::round`]).
///
/// ## Bounds
/// Prices, fill quantities, the position and the volume (all-time lots) are `i64`; `cash` and
/// `notional` are `i128`. Since `|cash|`, `|notional|` ≤ volume × max |price| < 2^63 × 2^63 =
/// 2^126, the volume is the first to overflow: a fill that would take it past `i64::MAX` is a
/// [`FillError::Overflow`] and the position is left unchanged — never a wrapped value (the other
/// sums are checked too). Published figures must also fit a `Decimal` (96-bit mantissa):
/// [`Ratio::round`] says `None` rather than wrap.
///
/// The average is a weighted mean of fill prices, so `|avg| ≤ 2^63`. Its exact denominator,
/// however, is unbounded in general: each add that follows a partial reduce can multiply it by the
/// new quantity (average cost is not closed over bounded integers; a trader random-walking a
/// position reaches any fixed bound within a handful of such adds). It is kept exact while its
/// lowest-terms denominator is at most [`AVG_DEN_MAX`] = 10^19; beyond that the average is
/// rounded half to even to a multiple of 10^-19 ticks (which keeps `avg_num` below
/// 2^63 × 10^19 < 2^127) and stays on that grid — exact whenever the new average lies on it —
/// until the position is flat or flips; [`avg_roundings`](Self::avg_roundings) counts the inexact
/// roundings. Each moves the average by at most 0.5 × 10^-19 ticks, and later averages are
/// weighted means that only damp earlier errors, so the average is off by at most
/// `avg_roundings` × 10^-19 ticks and realized P&L by that × the lots traded: more than ten
/// orders of magnitude below the published 6 places for realistic volumes. Total P&L
/// (`cash + quantity × mark`) is exact regardless. The `Decimal` accounting this replaces
/// rounded the average at every fill that did not divide exactly (28 significant digits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Signed: positive long, negative short.
    pub quantity: i64,
    avg_num: i128,
    avg_den: i128,
    cash: i128,
    /// All-time traded lots and ticks × lots.
    pub volume: i64,
    pub notional: i128,
    pub fills: i64,
    /// How many times the exact average did not fit [`AVG_DEN_MAX`] and was rounded.
    pub avg_roundings: u64,
}

impl Default for Position {
    fn default() -> Self {
        Position {
            quantity: 0,
            avg_num: 0,
            avg_den: 1,
            cash: 0,
            volume: 0,
            notional: 0,
            fills: 0,
            avg_roundings: 0,
        }
    }
}

/// The average of `held` lots at `num / den` and `qty` more at `price`, as
/// `(numerator, denominator, rounded)` with the denominator at most [`AVG_DEN_MAX`].
/// `held + qty` must fit an `i64` (the caller checks the new position).
///
/// The new average is `(num × held + price × qty × den) / (den × (held + qty))`; the paths below
/// compute it in the cheapest width that holds it. Every intermediate is bounded by
/// `|average| × denominator` with `|average| <= 2^63` (a weighted mean of `i64` prices) or is
/// checked.
#[inline]
fn add_to_average(num: i128, den: i128, held: u64, qty: i64, price: i64) -> (i128, i128, bool) {
    const G: i128 = AVG_DEN_MAX;
    let total = held as i128 + qty as i128; // <= 2^63
    let pq = price as i128 * qty as i128;
    // `den` divides `held` (always so while the position has only grown: then `num / den` is
    // `cost / held`): the new average is `(cost + pq) / total`, no larger denominator.
    let den64 = den as u64; // den <= AVG_DEN_MAX < 2^64
    if held == 0 || (den64 <= held && held.is_multiple_of(den64)) {
        let m = (held / den64) as i128;
        if let Some(cost) = num.checked_mul(m).and_then(|c| c.checked_add(pq)) {
            return (cost, total, false); // total <= 2^63 < AVG_DEN_MAX
        }
    }
    // The exact denominator fits: |numerator| <= 2^63 × den × total < 2^127. Lowest terms.
    if let Some(d) = den.checked_mul(total).filter(|&d| d <= G) {
        let n = num * held as i128 + pq * den;
        let g = gcd_u64((n.unsigned_abs() % d as u128) as u64, d as u64) as i128;
        return (n / g, d / g, false);
    }
    // The average is on the 1/G grid (it was rounded before): in grid units `a = avg × G`,
    // the new one is `(a × held + price × G × qty) / total`, rounded to the grid unless exact.
    if den == G || G % den == 0 {
        let a = if den == G { num } else { num * (G / den) }; // |a| <= 2^63 × G < 2^127
        let n = (a.checked_mul(held as i128))
            .zip((price as i128 * G).checked_mul(qty as i128))
            .and_then(|(x, y)| x.checked_add(y));
        if let Some(n) = n {
            let q = n.div_euclid(total);
            let r = n - q * total;
            let up = 2 * r > total || (2 * r == total && q & 1 == 1);
            return (q + up as i128, G, r != 0);
        }
    }
    // Otherwise, exactly in 256 bits: lowest terms if the denominator fits, else the grid.
    let n = I256::new(num) * I256::new(held as i128) + I256::new(pq) * I256::new(den);
    let d = I256::new(den) * I256::new(total);
    let (mag, dm) = (n.unsigned_abs(), d.as_u256());
    let g = match (u128::try_from(mag), u128::try_from(dm)) {
        (Ok(a), Ok(b)) => U256::new(gcd_u128(a, b)),
        _ => gcd_u256(mag, dm),
    };
    let g = g.as_i256();
    let (n, d) = (n / g, d / g);
    if d <= I256::new(G) {
        // |n| <= 2^63 × d < 2^127.
        return (n.as_i128(), d.as_i128(), false);
    }
    // Round to the nearest multiple of 1 / G, half to even (d > G, so it is inexact).
    let scaled = n * I256::new(G); // |n| <= 2^63 × d < 2^191; × 2^64 < 2^255
    let q = scaled.div_euclid(d);
    let r = scaled - q * d;
    let twice = r * I256::new(2);
    let k = if twice > d || (twice == d && q & I256::ONE == I256::ONE) {
        q + I256::ONE
    } else {
        q
    };
    (k.as_i128(), G, true)
}

/// Greatest common divisor (binary); `gcd(0, b) = b`.
#[inline]
fn gcd_u64(mut a: u64, mut b: u64) -> u64 {
    if a == 0 {
        return b;
    }
    if b == 0 {
        return a;
    }
    let shift = (a | b).trailing_zeros();
    a >>= a.trailing_zeros();
    loop {
        b >>= b.trailing_zeros();
        if a > b {
            std::mem::swap(&mut a, &mut b);
        }
        b -= a;
        if b == 0 {
            return a << shift;
        }
    }
}

impl Position {
    /// Applies one fill of `qty` lots at `price` ticks. On error the position is unchanged.
    pub fn fill(&mut self, buy: bool, qty: i64, price: i64) -> Result<(), FillError> {
        use FillError::Overflow;
        if qty < 0 {
            return Err(FillError::NegativeQuantity(qty));
        }
        let value = qty as i128 * price as i128; // |value| < 2^126
        let mut next = *self;
        next.volume = self.volume.checked_add(qty).ok_or(Overflow("volume"))?;
        next.notional = self
            .notional
            .checked_add(value)
            .ok_or(Overflow("notional"))?;
        next.fills = self.fills.checked_add(1).ok_or(Overflow("fills"))?;
        next.cash = if buy {
            self.cash.checked_sub(value)
        } else {
            self.cash.checked_add(value)
        }
        .ok_or(Overflow("cash"))?;
        if qty > 0 {
            let held = self.quantity.unsigned_abs();
            if self.quantity == 0 || (self.quantity > 0) == buy {
                // Opening or adding: new weighted average.
                next.quantity = if buy {
                    self.quantity.checked_add(qty)
                } else {
                    self.quantity.checked_sub(qty)
                }
                .ok_or(Overflow("position"))?;
                let (num, den, rounded) =
                    add_to_average(self.avg_num, self.avg_den, held, qty, price);
                (next.avg_num, next.avg_den) = (num, den);
                next.avg_roundings += rounded as u64;
            } else {
                // Reducing, closing, or flipping through zero (opposite signs: no overflow).
                next.quantity = if buy {
                    self.quantity + qty
                } else {
                    self.quantity - qty
                };
                if next.quantity == 0 {
                    (next.avg_num, next.avg_den) = (0, 1);
                } else if (next.quantity > 0) != (self.quantity > 0) {
                    (next.avg_num, next.avg_den) = (price as i128, 1);
                }
            }
        }
        *self = next;
        Ok(())
    }

    /// Average entry price of the open position (ticks; 0 when flat), exact.
    pub fn avg_price(&self) -> Ratio {
        Ratio::new(self.avg_num, self.avg_den)
    }

    /// Σ sell `qty × price` − Σ buy `qty × price` (ticks × lots).
    pub fn cash(&self) -> i128 {
        self.cash
    }

    /// Realized P&L (ticks × lots), exact: `cash + quantity × average`.
    pub fn realized(&self) -> Ratio {
        // |cash × den| < 2^191, |quantity × num| < 2^190: fits 256 bits.
        Ratio::int(self.quantity as i128)
            .checked_mul(self.avg_price())
            .and_then(|q_avg| Ratio::int(self.cash).checked_add(q_avg))
            .expect("fits 256 bits")
    }

    /// Unrealized P&L (ticks × lots) marked at `mark` ticks, exact; `None` only if it does not
    /// fit 256 bits (a mark with a large denominator and an extreme position).
    pub fn unrealized(&self, mark: impl Into<Ratio>) -> Option<Ratio> {
        Ratio::int(self.quantity as i128).checked_mul(mark.into().checked_sub(self.avg_price())?)
    }

    /// Total P&L (realized + unrealized, ticks × lots) marked at `mark` ticks: the exact
    /// integer `cash + quantity × mark`; `None` if it leaves `i128`.
    pub fn total(&self, mark: i64) -> Option<i128> {
        self.cash.checked_add(self.quantity as i128 * mark as i128)
    }
}

/// A trader/instrument that traded in a closed window, as of the window's close.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PnlRow {
    pub window_start: i64,
    pub window_end: i64,
    pub trader: u32,
    pub instrument: u32,
    pub position: Position,
    /// Last trade price of the instrument at the close (ticks).
    pub mark: i64,
    /// Activity in this window.
    pub window_fills: i64,
    pub window_bought: i64,
    pub window_sold: i64,
    pub window_notional: i128,
}

/// Every trader's total P&L (money: realized + unrealized at the last price, all instruments) at
/// one window close.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowTotals {
    pub window_start: i64,
    pub window_end: i64,
    /// `(trader, total)` sorted by trader.
    pub totals: Vec<(u32, Decimal)>,
}

/// What one push produced.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PnlOutput {
    pub rows: Vec<PnlRow>,
    pub totals: Vec<WindowTotals>,
    pub late: Vec<TradeRow>,
}

/// A window that closed: who traded in it (as of the close), and every trader's total.
#[derive(Clone, Serialize, Deserialize)]
struct ClosedWindow {
    start: i64,
    rows: Vec<PnlRow>,
    totals: Vec<(u32, Decimal)>,
}

/// One window's activity of one trader in one instrument.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Activity {
    fills: i64,
    bought: i64,
    sold: i64,
    notional: i128,
}

impl Activity {
    #[inline]
    fn add(&mut self, buy: bool, qty: i64, price: i64) -> Option<()> {
        self.fills = self.fills.checked_add(1)?;
        if buy {
            self.bought = self.bought.checked_add(qty)?;
        } else {
            self.sold = self.sold.checked_add(qty)?;
        }
        self.notional = self.notional.checked_add(qty as i128 * price as i128)?;
        Some(())
    }
}

/// A trader/instrument's position, with a cache of where it last wrote activity.
#[derive(Clone)]
struct Slot {
    trader: u32,
    instrument: u32,
    position: Position,
    /// The open window (start) and entry of `OpenWindow::entries` this slot last wrote to.
    cached_window: i64,
    cached_entry: u32,
}

/// An open window: activity per slot that traded in it, in order of first trade.
#[derive(Clone, Default)]
struct OpenWindow {
    entries: Vec<(u32, Activity)>,
    /// Slot → index in `entries`.
    index: FxHashMap<u32, u32>,
}

impl OpenWindow {
    fn from_entries(entries: Vec<(u32, Activity)>) -> Self {
        let index = entries
            .iter()
            .enumerate()
            .map(|(k, &(slot, _))| (slot, k as u32))
            .collect();
        OpenWindow { entries, index }
    }
}

fn overflow(what: impl std::fmt::Display) -> polars::prelude::PolarsError {
    polars_err!(ComputeError: "P&L: {what}")
}

/// Incremental P&L for one stream of trades.
///
/// Implements `Serialize` and `Deserialize` (on demand; [`push`](Self::push) is unaffected): the
/// positions in order of first appearance, the last prices, the activity of open windows and the
/// closed windows not yet emitted, in a form that also suits non-self-describing formats such as
/// bincode. A deserialized engine continues exactly where the serialized one was.
pub struct PnlEngine {
    clock: Clock,
    /// Money per (tick × lot), per instrument index.
    unit_value: Vec<Decimal>,
    /// Positions, in order of first appearance.
    slots: Vec<Slot>,
    /// (trader, instrument) → index in `slots`.
    index: FxHashMap<(u32, u32), u32>,
    /// The same for `trader × instruments + instrument < DENSE_MAX` (`u32::MAX`: not cached
    /// yet), filled as slots are looked up.
    dense: Vec<u32>,
    last_price: FxHashMap<u32, i64>,
    /// Open windows by start.
    open: BTreeMap<i64, OpenWindow>,
    /// Windows closed, as of their close, not yet emitted.
    closed: Vec<ClosedWindow>,
}

impl PnlEngine {
    /// `unit_value[i]` = `tick_size × lot_size` of instrument `i`.
    pub fn new(spec: WindowSpec, unit_value: Vec<Decimal>) -> Self {
        PnlEngine {
            clock: Clock::new(spec),
            unit_value,
            slots: Vec::new(),
            index: FxHashMap::default(),
            dense: Vec::new(),
            last_price: FxHashMap::default(),
            open: BTreeMap::new(),
            closed: Vec::new(),
        }
    }

    /// The watermark: windows ending at or before it are closed.
    pub fn watermark(&self) -> i64 {
        self.clock.watermark()
    }

    /// Current position of `trader` in `instrument`.
    pub fn position(&self, trader: u32, instrument: u32) -> Option<&Position> {
        let &slot = self.index.get(&(trader, instrument))?;
        Some(&self.slots[slot as usize].position)
    }

    /// Money per tick × lot of `instrument` (1 for an instrument without one).
    pub fn unit_value(&self, instrument: u32) -> Decimal {
        self.unit_value
            .get(instrument as usize)
            .copied()
            .unwrap_or(Decimal::ONE)
    }

    /// Snapshots windows that closed (before the trade that closed them is applied).
    fn snapshot_closed(&mut self) -> PolarsResult<()> {
        let wm = self.clock.watermark();
        let length = self.clock.spec().length_ms;
        while let Some(entry) = self.open.first_entry() {
            let start = *entry.key();
            if start + length > wm {
                break;
            }
            let window = entry.remove();
            let mark = |i: u32| self.last_price.get(&i).copied().unwrap_or(0);
            let mut rows: Vec<PnlRow> = window
                .entries
                .iter()
                .map(|&(slot, a)| {
                    let s = &self.slots[slot as usize];
                    PnlRow {
                        window_start: start,
                        window_end: start + length,
                        trader: s.trader,
                        instrument: s.instrument,
                        position: s.position,
                        mark: mark(s.instrument),
                        window_fills: a.fills,
                        window_bought: a.bought,
                        window_sold: a.sold,
                        window_notional: a.notional,
                    }
                })
                .collect();
            rows.sort_unstable_by_key(|r| (r.trader, r.instrument));
            let mut totals: BTreeMap<u32, Decimal> = BTreeMap::new();
            for s in &self.slots {
                let total = s
                    .position
                    .total(mark(s.instrument))
                    .and_then(|t| Decimal::try_from_i128_with_scale(t, 0).ok())
                    .and_then(|t| t.checked_mul(self.unit_value(s.instrument)))
                    .ok_or_else(|| {
                        overflow(format_args!(
                            "total of trader {} in instrument {} is beyond a decimal",
                            s.trader, s.instrument
                        ))
                    })?;
                let sum = totals.entry(s.trader).or_default();
                *sum = sum.checked_add(total).ok_or_else(|| {
                    overflow(format_args!("total of trader {} overflows", s.trader))
                })?;
            }
            self.closed.push(ClosedWindow {
                start,
                rows,
                totals: totals.into_iter().collect(),
            });
        }
        Ok(())
    }

    /// The slot of `(trader, instrument)`, created flat if new.
    #[inline]
    fn slot(&mut self, trader: u32, instrument: u32) -> usize {
        // Dense ids (interned traders, instrument indexes) go through a table; others, and
        // table misses, through the map.
        let stride = self.unit_value.len().max(1);
        let dense = ((instrument as usize) < stride)
            .then(|| trader as usize * stride + instrument as usize)
            .filter(|&k| k < DENSE_MAX);
        if let Some(&s) = dense.and_then(|k| self.dense.get(k)) {
            if s != u32::MAX {
                return s as usize;
            }
        }
        let next = self.slots.len() as u32;
        let slot = *self.index.entry((trader, instrument)).or_insert(next);
        if slot == next {
            self.slots.push(Slot {
                trader,
                instrument,
                position: Position::default(),
                cached_window: i64::MIN,
                cached_entry: 0,
            });
        }
        if let Some(k) = dense {
            if k >= self.dense.len() {
                self.dense.resize(k + 1, u32::MAX);
            }
            self.dense[k] = slot;
        }
        slot as usize
    }

    /// Adds a micro-batch of trades (in arrival order).
    pub fn push(&mut self, trades: &[TradeRow]) -> PolarsResult<PnlOutput> {
        Ok(self.push_bounded(trades, usize::MAX)?.0)
    }

    /// Adds trades (in arrival order) until at least `max_closed` windows have closed, and
    /// returns their output with the number of trades used (≥ 1 unless `trades` is empty): a
    /// closed window holds every trader's total until it is emitted, so a caller bounds memory
    /// by pushing the rest of a batch in further calls. The outputs do not depend on the split.
    ///
    /// Errors if a position leaves its bounds ([`Position`]); trades before the failing one have
    /// been applied.
    pub fn push_bounded(
        &mut self,
        trades: &[TradeRow],
        max_closed: usize,
    ) -> PolarsResult<(PnlOutput, usize)> {
        let mut used = 0;
        let mut late = Vec::new();
        for t in trades {
            if self.closed.len() >= max_closed.max(1) {
                break;
            }
            used += 1;
            let before = self.clock.watermark();
            let Some(w) = self.clock.admit(t.ts_ms) else {
                late.push(t.clone());
                continue;
            };
            if self.clock.watermark() > before {
                self.snapshot_closed()?;
            }
            for (who, buy) in [(t.buyer, true), (t.seller, false)] {
                let slot = self.slot(who, t.instrument);
                let s = &mut self.slots[slot];
                s.position.fill(buy, t.quantity, t.price).map_err(|e| {
                    overflow(format_args!(
                        "trader {who} in instrument {}: {e}",
                        t.instrument
                    ))
                })?;
                let window = if s.cached_window == w {
                    &mut self
                        .open
                        .get_mut(&w)
                        .expect("cached window is open")
                        .entries[s.cached_entry as usize]
                } else {
                    let open = self.open.entry(w).or_default();
                    let n = open.entries.len() as u32;
                    let entry = *open.index.entry(slot as u32).or_insert(n);
                    if entry == n {
                        open.entries.push((slot as u32, Activity::default()));
                    }
                    (s.cached_window, s.cached_entry) = (w, entry);
                    &mut open.entries[entry as usize]
                };
                window.1.add(buy, t.quantity, t.price).ok_or_else(|| {
                    overflow(format_args!(
                        "window activity of trader {who} in instrument {} overflows",
                        t.instrument
                    ))
                })?;
            }
            self.last_price.insert(t.instrument, t.price);
        }
        let (rows, totals) = self.emit_closed();
        Ok((PnlOutput { rows, totals, late }, used))
    }

    /// End of input: closes every window.
    pub fn flush(&mut self) -> PolarsResult<PnlOutput> {
        self.clock.close_all();
        self.snapshot_closed()?;
        let (rows, totals) = self.emit_closed();
        Ok(PnlOutput {
            rows,
            totals,
            late: Vec::new(),
        })
    }

    fn emit_closed(&mut self) -> (Vec<PnlRow>, Vec<WindowTotals>) {
        let length = self.clock.spec().length_ms;
        let mut rows = Vec::new();
        let mut totals = Vec::new();
        for w in self.closed.drain(..) {
            rows.extend(w.rows);
            totals.push(WindowTotals {
                window_start: w.start,
                window_end: w.start + length,
                totals: w.totals,
            });
        }
        (rows, totals)
    }
}

/// A slot's activity in one window.
type SlotActivity = (u32, Activity);

/// The serialized form of a [`PnlEngine`]. Borrows the engine when serializing; owned when
/// deserialized.
#[derive(Serialize, Deserialize)]
#[serde(rename = "PnlEngine")]
struct PnlEngineState<'a> {
    clock: Cow<'a, Clock>,
    unit_value: Cow<'a, [Decimal]>,
    /// `(trader, instrument, position)` in order of first appearance (slot order).
    positions: Vec<(u32, u32, Position)>,
    /// `(instrument, price)` sorted by instrument.
    last_price: Vec<(u32, i64)>,
    /// Open windows by start: `(slot, activity)` in order of first trade.
    open: Vec<(i64, Cow<'a, [SlotActivity]>)>,
    closed: Cow<'a, [ClosedWindow]>,
}

impl Serialize for PnlEngine {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut last_price: Vec<(u32, i64)> =
            self.last_price.iter().map(|(&i, &p)| (i, p)).collect();
        last_price.sort_unstable();
        PnlEngineState {
            clock: Cow::Borrowed(&self.clock),
            unit_value: Cow::Borrowed(&self.unit_value),
            positions: self
                .slots
                .iter()
                .map(|s| (s.trader, s.instrument, s.position))
                .collect(),
            last_price,
            open: self
                .open
                .iter()
                .map(|(&start, w)| (start, Cow::Borrowed(&w.entries[..])))
                .collect(),
            closed: Cow::Borrowed(&self.closed),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for PnlEngine {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let state = PnlEngineState::deserialize(deserializer)?;
        let mut index = FxHashMap::default();
        let mut slots = Vec::with_capacity(state.positions.len());
        for (k, (trader, instrument, position)) in state.positions.into_iter().enumerate() {
            if index.insert((trader, instrument), k as u32).is_some() {
                return Err(de::Error::custom(format!(
                    "trader/instrument {:?} has two positions",
                    (trader, instrument)
                )));
            }
            if !(1..=AVG_DEN_MAX).contains(&position.avg_den) {
                return Err(de::Error::custom(format!(
                    "average price denominator {} out of range",
                    position.avg_den
                )));
            }
            slots.push(Slot {
                trader,
                instrument,
                position,
                cached_window: i64::MIN,
                cached_entry: 0,
            });
        }
        let mut open = BTreeMap::new();
        for (start, entries) in state.open {
            let window = OpenWindow::from_entries(entries.into_owned());
            // Every slot named must exist, once per window.
            if window.index.len() != window.entries.len()
                || window
                    .entries
                    .iter()
                    .any(|&(s, _)| s as usize >= slots.len())
            {
                return Err(de::Error::custom(format!(
                    "open window {start} names a trader/instrument twice or one with no position"
                )));
            }
            if open.insert(start, window).is_some() {
                return Err(de::Error::custom(format!("open window {start} twice")));
            }
        }
        Ok(PnlEngine {
            clock: state.clock.into_owned(),
            unit_value: state.unit_value.into_owned(),
            slots,
            index,
            dense: Vec::new(),
            last_price: state.last_price.into_iter().collect(),
            open,
            closed: state.closed.into_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trade(instrument: u32, ts_ms: i64, price: i64, buyer: u32, seller: u32) -> TradeRow {
        TradeRow {
            instrument,
            ts_ms,
            price,
            quantity: 3,
            buyer,
            seller,
        }
    }

    fn restore(e: &PnlEngine) -> PnlEngine {
        let bytes = bincode::serialize(e).unwrap();
        let restored: PnlEngine = bincode::deserialize(&bytes).unwrap();
        assert_eq!(bincode::serialize(&restored).unwrap(), bytes);
        restored
    }

    #[test]
    fn open_window_activity_survives_a_round_trip() {
        let spec = WindowSpec {
            length_ms: 1_000,
            lateness_ms: 5_000,
        };
        let mut e = PnlEngine::new(spec, vec![Decimal::ONE; 2]);
        e.push(&[trade(1, 1_500, 10, 1, 2), trade(0, 100, 11, 2, 3)])
            .unwrap();
        e.push(&[trade(0, 2_100, 13, 3, 1), trade(1, 1_400, 9, 1, 2)])
            .unwrap();
        let entries: usize = e.open.values().map(|w| w.entries.len()).sum();
        assert_eq!(entries, 6);
        let w1 = &e.open[&1_000];
        let (slot, a) = w1.entries[0];
        assert_eq!(e.slots[slot as usize].trader, 1);
        assert_eq!(
            a,
            Activity {
                fills: 2,
                bought: 6,
                sold: 0,
                notional: 57
            }
        );
        let mut restored = restore(&e);
        let more = [trade(1, 1_600, 8, 2, 1), trade(0, 9_000, 13, 3, 1)];
        assert_eq!(restored.push(&more).unwrap(), e.push(&more).unwrap());
    }

    /// Between pushes every closed window has been emitted; this holds the engine in the middle
    /// of a close (windows snapshotted, not yet emitted) to cover that state too.
    #[test]
    fn closed_but_unemitted_windows_survive_a_round_trip() {
        let spec = WindowSpec {
            length_ms: 1_000,
            lateness_ms: 0,
        };
        let unit = vec![Decimal::new(5, 1), Decimal::new(1, 2)];
        let trades = [
            trade(0, 100, 100, 1, 2),
            trade(1, 200, 50, 2, 3),
            trade(0, 1_100, 104, 3, 1),
            trade(0, 1_200, 103, 1, 3),
            trade(1, 2_300, 51, 1, 2),
        ];
        let mut e = PnlEngine::new(spec, unit);
        let first = e.push(&trades).unwrap();
        assert_eq!(first.totals.len(), 2, "windows 0 and 1 closed");
        // What `flush` does, stopped before the windows are emitted.
        e.clock.close_all();
        e.snapshot_closed().unwrap();
        assert_eq!(e.closed.len(), 1);
        assert!(e.open.is_empty());

        let mut restored = restore(&e);
        assert_eq!(restored.closed.len(), 1);
        let want = e.emit_closed();
        let got = restored.emit_closed();
        assert_eq!(got, want);
        assert_eq!(want.0.len(), 2, "traders 1 and 2 traded in window 2");
        assert_eq!(want.0[0].window_bought, 3);
        // A snapshot naming a trader/instrument without a position is rejected.
        let mut bad = restore(&restored);
        bad.open.insert(
            5_000,
            OpenWindow::from_entries(vec![(99, Activity::default())]),
        );
        let err = bincode::deserialize::<PnlEngine>(&bincode::serialize(&bad).unwrap())
            .err()
            .expect("rejected");
        assert!(err.to_string().contains("no position"), "{err}");
        // So is a position with a zero denominator.
        let mut bad = restore(&restored);
        bad.slots[0].position.avg_den = 0;
        let err = bincode::deserialize::<PnlEngine>(&bincode::serialize(&bad).unwrap())
            .err()
            .expect("rejected");
        assert!(err.to_string().contains("denominator"), "{err}");
    }

    #[test]
    fn sparse_ids_take_the_map_and_agree_with_dense_ones() {
        let spec = WindowSpec {
            length_ms: 1_000,
            lateness_ms: 0,
        };
        // Instrument 0 of 2 with dense trader ids; instrument 5 (past the unit values) and a
        // huge trader id only through the map.
        let ids = [(1, 2, 0), (u32::MAX, 7, 5), (1, u32::MAX - 1, 0)];
        let mut e = PnlEngine::new(spec, vec![Decimal::ONE; 2]);
        let mut trades = Vec::new();
        for k in 0..60 {
            let (b, s, i) = ids[k % 3];
            let (b, s) = if k % 4 == 0 { (s, b) } else { (b, s) };
            trades.push(trade(i, 10 * k as i64, 100 + (k as i64 % 7), b, s));
        }
        e.push(&trades).unwrap();
        let mut want: BTreeMap<(u32, u32), Position> = BTreeMap::new();
        for t in &trades {
            for (who, buy) in [(t.buyer, true), (t.seller, false)] {
                let p = want.entry((who, t.instrument)).or_default();
                p.fill(buy, t.quantity, t.price).unwrap();
            }
        }
        assert_eq!(e.slots.len(), want.len());
        for (&(t, i), p) in &want {
            assert_eq!(e.position(t, i), Some(p), "{t} {i}");
        }
        assert!(e.dense.len() <= 3 * 2, "only dense ids in the table");
        let restored = restore(&e);
        assert_eq!(restored.position(u32::MAX, 5), e.position(u32::MAX, 5));
    }

    #[test]
    fn averages_stay_cost_over_quantity_while_a_position_grows() {
        let mut p = Position::default();
        p.fill(true, 1, 100).unwrap();
        p.fill(true, 2, 101).unwrap();
        assert_eq!((p.avg_num, p.avg_den), (302, 3));
        p.fill(false, 1, 97).unwrap(); // reduce: the average is kept
        assert_eq!((p.quantity, p.avg_num, p.avg_den), (2, 302, 3));
        // Add after a reduce: (302/3 × 2 + 99) / 3 = 901 / 9, in lowest terms.
        p.fill(true, 1, 99).unwrap();
        assert_eq!((p.quantity, p.avg_num, p.avg_den), (3, 901, 9));
        assert_eq!(p.avg_roundings, 0);
    }
}
