//! Trader positions and profit and loss, per trader and instrument, with average-cost accounting.
//!
//! Accounting is sequential (it has to be: each fill depends on the position before it) and exact:
//! quantities in lots, prices in ticks, average prices and P&L in `rust_decimal`, money converted
//! with each instrument's `tick_size × lot_size`. Per-window activity (volume, buys, sells,
//! notional, fills per trader and instrument) is aggregated with Polars. At each window close the
//! engine reports every trader/instrument that traded in the window, with the position as of the
//! close, and every trader's total P&L (for leaderboards).
//!
//! Average cost: buying into a long (or selling into a short) moves the average price to the
//! quantity-weighted mean; reducing a position realizes `closed qty × (exit − average)` (sign
//! flipped for shorts) and keeps the average; a fill larger than the position closes it and opens
//! the remainder on the other side at the fill price.

use crate::window::{split_closed, Clock, WindowSpec};
use crate::TradeRow;
use polars::prelude::*;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet};

/// One trader's position in one instrument. Quantities in lots, prices in ticks, P&L in
/// ticks × lots (multiply by `tick_size × lot_size` for money).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Position {
    /// Signed: positive long, negative short.
    pub quantity: i64,
    /// Average entry price of the open position (0 when flat).
    pub avg_price: Decimal,
    pub realized: Decimal,
    /// All-time traded lots and ticks × lots.
    pub volume: i64,
    pub notional: i64,
    pub fills: i64,
}

impl Position {
    /// Applies one fill of `qty` lots at `price` ticks.
    pub fn fill(&mut self, buy: bool, qty: i64, price: i64) {
        let signed = if buy { qty } else { -qty };
        let price_d = Decimal::from(price);
        self.volume += qty;
        self.notional += qty * price;
        self.fills += 1;
        if self.quantity == 0 || (self.quantity > 0) == buy {
            // Opening or adding: new weighted average.
            let held = Decimal::from(self.quantity.abs());
            self.avg_price = (self.avg_price * held + price_d * Decimal::from(qty))
                / (held + Decimal::from(qty));
            self.quantity += signed;
            return;
        }
        // Reducing, closing, or flipping through zero.
        let closed = qty.min(self.quantity.abs());
        let direction = Decimal::from(self.quantity.signum());
        self.realized += Decimal::from(closed) * (price_d - self.avg_price) * direction;
        self.quantity += if buy { closed } else { -closed };
        let remainder = qty - closed;
        if self.quantity == 0 {
            self.avg_price = Decimal::ZERO;
        }
        if remainder > 0 {
            self.quantity = if buy { remainder } else { -remainder };
            self.avg_price = price_d;
        }
    }

    /// Unrealized P&L (ticks × lots) marked at `mark` ticks.
    pub fn unrealized(&self, mark: Decimal) -> Decimal {
        Decimal::from(self.quantity) * (mark - self.avg_price)
    }
}

/// A trader/instrument that traded in a closed window, as of the window's close.
#[derive(Clone, Debug, PartialEq, Eq)]
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
    pub window_notional: i64,
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

/// A trader/instrument position as of a window's close.
struct Snapshot {
    trader: u32,
    instrument: u32,
    position: Position,
    mark: i64,
}

/// A window that closed: who traded in it, and every trader's total at the close.
struct ClosedWindow {
    start: i64,
    rows: Vec<Snapshot>,
    totals: Vec<(u32, Decimal)>,
}

/// One window's activity of one trader in one instrument.
#[derive(Clone, Copy, Default)]
struct Activity {
    fills: i64,
    bought: i64,
    sold: i64,
    notional: i64,
}

/// Incremental P&L for one stream of trades.
pub struct PnlEngine {
    clock: Clock,
    /// Money per (tick × lot), per instrument index.
    unit_value: Vec<Decimal>,
    positions: BTreeMap<(u32, u32), Position>,
    last_price: BTreeMap<u32, i64>,
    /// Open windows: who traded in them.
    active: BTreeMap<i64, BTreeSet<(u32, u32)>>,
    /// Snapshots taken when windows closed, waiting for their activity aggregates.
    closed: Vec<ClosedWindow>,
    /// Partial per-window activity of open windows.
    partial: Option<DataFrame>,
}

impl PnlEngine {
    /// `unit_value[i]` = `tick_size × lot_size` of instrument `i`.
    pub fn new(spec: WindowSpec, unit_value: Vec<Decimal>) -> Self {
        PnlEngine {
            clock: Clock::new(spec),
            unit_value,
            positions: BTreeMap::new(),
            last_price: BTreeMap::new(),
            active: BTreeMap::new(),
            closed: Vec::new(),
            partial: None,
        }
    }

    /// The watermark: windows ending at or before it are closed.
    pub fn watermark(&self) -> i64 {
        self.clock.watermark()
    }

    /// Current position of `trader` in `instrument`.
    pub fn position(&self, trader: u32, instrument: u32) -> Option<&Position> {
        self.positions.get(&(trader, instrument))
    }

    /// Money value of `amount` ticks × lots of `instrument`.
    pub fn money(&self, instrument: u32, amount: Decimal) -> Decimal {
        amount
            * self
                .unit_value
                .get(instrument as usize)
                .copied()
                .unwrap_or(Decimal::ONE)
    }

    /// Snapshots windows that closed (before the trade that closed them is applied).
    fn snapshot_closed(&mut self) {
        let wm = self.clock.watermark();
        let length = self.clock.spec().length_ms;
        while let Some((&start, _)) = self.active.first_key_value() {
            if start + length > wm {
                break;
            }
            let who = self.active.remove(&start).expect("present");
            let rows = who
                .into_iter()
                .map(|(trader, instrument)| Snapshot {
                    trader,
                    instrument,
                    position: self.positions[&(trader, instrument)].clone(),
                    mark: self.last_price.get(&instrument).copied().unwrap_or(0),
                })
                .collect();
            let mut totals: BTreeMap<u32, Decimal> = BTreeMap::new();
            for (&(t, i), p) in &self.positions {
                let mark = Decimal::from(self.last_price.get(&i).copied().unwrap_or(0));
                *totals.entry(t).or_default() += self.money(i, p.realized + p.unrealized(mark));
            }
            self.closed.push(ClosedWindow {
                start,
                rows,
                totals: totals.into_iter().collect(),
            });
        }
    }

    /// Adds a micro-batch of trades (in arrival order).
    pub fn push(&mut self, trades: &[TradeRow]) -> PolarsResult<PnlOutput> {
        let mut late = Vec::new();
        let (mut window, mut trader, mut inst, mut bought, mut sold, mut notional) = (
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
        );
        for t in trades {
            let before = self.clock.watermark();
            let Some(w) = self.clock.admit(t.ts_ms) else {
                late.push(t.clone());
                continue;
            };
            if self.clock.watermark() > before {
                self.snapshot_closed();
            }
            for (who, buy) in [(t.buyer, true), (t.seller, false)] {
                self.positions
                    .entry((who, t.instrument))
                    .or_default()
                    .fill(buy, t.quantity, t.price);
                self.active
                    .entry(w)
                    .or_default()
                    .insert((who, t.instrument));
                window.push(w);
                trader.push(who);
                inst.push(t.instrument);
                bought.push(if buy { t.quantity } else { 0 });
                sold.push(if buy { 0 } else { t.quantity });
                notional.push(t.quantity * t.price);
            }
            self.last_price.insert(t.instrument, t.price);
        }
        if !window.is_empty() {
            let n = window.len();
            let df = DataFrame::new(
                n,
                vec![
                    Column::new("window".into(), window),
                    Column::new("trader".into(), trader),
                    Column::new("instrument".into(), inst),
                    Column::new("bought".into(), bought),
                    Column::new("sold".into(), sold),
                    Column::new("fills".into(), vec![1i64; n]),
                    Column::new("notional".into(), notional),
                ],
            )?;
            let fills = df.lazy();
            let all = match self.partial.take() {
                None => fills,
                Some(p) => concat([p.lazy(), fills], UnionArgs::default())?,
            };
            let agg = all
                .group_by_stable([col("window"), col("trader"), col("instrument")])
                .agg([
                    col("bought").sum(),
                    col("sold").sum(),
                    col("fills").sum(),
                    col("notional").sum(),
                ])
                .collect()?;
            self.partial = Some(agg);
        }
        let (rows, totals) = self.emit_closed()?;
        Ok(PnlOutput { rows, totals, late })
    }

    /// End of input: closes every window.
    pub fn flush(&mut self) -> PolarsResult<PnlOutput> {
        self.clock.close_all();
        self.snapshot_closed();
        let (rows, totals) = self.emit_closed()?;
        Ok(PnlOutput {
            rows,
            totals,
            late: Vec::new(),
        })
    }

    fn emit_closed(&mut self) -> PolarsResult<(Vec<PnlRow>, Vec<WindowTotals>)> {
        if self.closed.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let length = self.clock.spec().length_ms;
        let through = self
            .closed
            .last()
            .map(|c| c.start + length)
            .unwrap_or(i64::MIN);
        // Split the activity aggregates into closed and still-open windows.
        let mut activity: BTreeMap<(i64, u32, u32), Activity> = BTreeMap::new();
        if let Some(partial) = self.partial.take() {
            let (done, open) = split_closed(partial, length, through)?;
            self.partial = open;
            let done = done.collect()?;
            let i64s = |name: &str| -> PolarsResult<Vec<i64>> {
                Ok(done.column(name)?.i64()?.into_no_null_iter().collect())
            };
            let u32s = |name: &str| -> PolarsResult<Vec<u32>> {
                Ok(done.column(name)?.u32()?.into_no_null_iter().collect())
            };
            let (w, t, i) = (i64s("window")?, u32s("trader")?, u32s("instrument")?);
            let (b, s, n, f) = (
                i64s("bought")?,
                i64s("sold")?,
                i64s("notional")?,
                i64s("fills")?,
            );
            for k in 0..done.height() {
                let a = Activity {
                    fills: f[k],
                    bought: b[k],
                    sold: s[k],
                    notional: n[k],
                };
                activity.insert((w[k], t[k], i[k]), a);
            }
        }
        let mut rows = Vec::new();
        let mut totals = Vec::new();
        for ClosedWindow {
            start,
            rows: snaps,
            totals: window_totals,
        } in self.closed.drain(..)
        {
            for Snapshot {
                trader,
                instrument,
                position,
                mark,
            } in snaps
            {
                let a = activity
                    .get(&(start, trader, instrument))
                    .copied()
                    .unwrap_or_default();
                rows.push(PnlRow {
                    window_start: start,
                    window_end: start + length,
                    trader,
                    instrument,
                    position,
                    mark,
                    window_fills: a.fills,
                    window_bought: a.bought,
                    window_sold: a.sold,
                    window_notional: a.notional,
                });
            }
            totals.push(WindowTotals {
                window_start: start,
                window_end: start + length,
                totals: window_totals,
            });
        }
        Ok((rows, totals))
    }
}
