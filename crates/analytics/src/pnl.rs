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
//!
//! A [`PnlEngine`] is serde-serializable, so its state can be snapshotted and restored.

use crate::columns::frame_columns;
use crate::window::{split_closed, Clock, WindowSpec};
use crate::TradeRow;
use polars::prelude::*;
use rust_decimal::Decimal;
use serde::{de, ser, Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

/// One trader's position in one instrument. Quantities in lots, prices in ticks, P&L in
/// ticks × lots (multiply by `tick_size × lot_size` for money).
///
/// Serializable; decimals are written as exact strings (the workspace's `serde-str` feature of
/// `rust_decimal`), which keeps their scale and suits bincode.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Clone, Serialize, Deserialize)]
struct Snapshot {
    trader: u32,
    instrument: u32,
    position: Position,
    mark: i64,
}

/// A window that closed: who traded in it, and every trader's total at the close.
#[derive(Clone, Serialize, Deserialize)]
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
///
/// Implements `Serialize` and `Deserialize` (on demand; [`push`](Self::push) is unaffected): the
/// partial activity of open windows is written as plain columns, everything else field by field,
/// in a form that also suits non-self-describing formats such as bincode. A deserialized engine
/// continues exactly where the serialized one was.
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
        Ok(self.push_bounded(trades, usize::MAX)?.0)
    }

    /// Adds trades (in arrival order) until at least `max_closed` windows have closed, and
    /// returns their output with the number of trades used (≥ 1 unless `trades` is empty): a
    /// closed window holds every trader's total until it is emitted, so a caller bounds memory
    /// by pushing the rest of a batch in further calls. The outputs do not depend on the split.
    pub fn push_bounded(
        &mut self,
        trades: &[TradeRow],
        max_closed: usize,
    ) -> PolarsResult<(PnlOutput, usize)> {
        let mut used = 0;
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
        Ok((PnlOutput { rows, totals, late }, used))
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

frame_columns! {
    /// The partial activity of open windows (`PnlEngine::partial`) as plain columns, one row per
    /// window, trader and instrument.
    struct PartialActivity {
        window: Int64Type,
        trader: UInt32Type,
        instrument: UInt32Type,
        bought: Int64Type,
        sold: Int64Type,
        fills: Int64Type,
        notional: Int64Type,
    }
}

/// The serialized form of a [`PnlEngine`]: its fields, with the partial activity as plain
/// columns. Borrows the engine when serializing; owned when deserialized.
#[derive(Serialize, Deserialize)]
#[serde(rename = "PnlEngine")]
struct PnlEngineState<'a> {
    clock: Cow<'a, Clock>,
    unit_value: Cow<'a, [Decimal]>,
    positions: Cow<'a, BTreeMap<(u32, u32), Position>>,
    last_price: Cow<'a, BTreeMap<u32, i64>>,
    active: Cow<'a, BTreeMap<i64, BTreeSet<(u32, u32)>>>,
    closed: Cow<'a, [ClosedWindow]>,
    partial: Option<PartialActivity>,
}

impl Serialize for PnlEngine {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let partial = self
            .partial
            .as_ref()
            .map(PartialActivity::from_frame)
            .transpose()
            .map_err(ser::Error::custom)?;
        PnlEngineState {
            clock: Cow::Borrowed(&self.clock),
            unit_value: Cow::Borrowed(&self.unit_value),
            positions: Cow::Borrowed(&self.positions),
            last_price: Cow::Borrowed(&self.last_price),
            active: Cow::Borrowed(&self.active),
            closed: Cow::Borrowed(&self.closed),
            partial,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for PnlEngine {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let state = PnlEngineState::deserialize(deserializer)?;
        let positions = state.positions.into_owned();
        // Closing a window looks up the position of everyone who traded in it.
        if let Some(key) = state
            .active
            .values()
            .flatten()
            .find(|key| !positions.contains_key(key))
        {
            return Err(de::Error::custom(format!(
                "trader/instrument {key:?} traded in an open window but has no position"
            )));
        }
        let partial = state
            .partial
            .map(PartialActivity::into_frame)
            .transpose()
            .map_err(de::Error::custom)?;
        Ok(PnlEngine {
            clock: state.clock.into_owned(),
            unit_value: state.unit_value.into_owned(),
            positions,
            last_price: state.last_price.into_owned(),
            active: state.active.into_owned(),
            closed: state.closed.into_owned(),
            partial,
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
    fn partial_activity_rebuilds_the_same_frame() {
        let spec = WindowSpec {
            length_ms: 1_000,
            lateness_ms: 5_000,
        };
        let mut e = PnlEngine::new(spec, vec![Decimal::ONE; 2]);
        e.push(&[trade(1, 1_500, 10, 1, 2), trade(0, 100, 11, 2, 3)])
            .unwrap();
        e.push(&[trade(0, 2_100, 13, 3, 1), trade(1, 1_400, 9, 1, 2)])
            .unwrap();
        let partial = e.partial.clone().expect("open windows");
        assert_eq!(partial.height(), 6);
        assert_eq!(partial.get_column_names(), PartialActivity::COLUMNS);

        let rebuilt = PartialActivity::from_frame(&partial)
            .unwrap()
            .into_frame()
            .unwrap();
        assert_eq!(rebuilt.schema(), partial.schema());
        assert!(rebuilt.equals(&partial), "{rebuilt}\n{partial}");
        assert!(PartialActivity::from_frame(&partial.drop("fills").unwrap()).is_err());
    }

    /// Between pushes every closed window has been emitted; this holds the engine in the middle
    /// of a close (windows snapshotted, activity not yet aggregated) to cover that state too.
    #[test]
    fn closed_but_unaggregated_windows_survive_a_round_trip() {
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
        // What `flush` does, stopped before the aggregates are joined.
        e.clock.close_all();
        e.snapshot_closed();
        assert_eq!(e.closed.len(), 1);
        assert!(e.active.is_empty() && e.partial.is_some());

        let mut restored = restore(&e);
        assert_eq!(restored.closed.len(), 1);
        let want = e.emit_closed().unwrap();
        let got = restored.emit_closed().unwrap();
        assert_eq!(got, want);
        assert_eq!(want.0.len(), 2, "traders 1 and 2 traded in window 2");
        assert_eq!(want.0[0].window_bought, 3);
        // A snapshot naming a trader/instrument without a position is rejected.
        let mut bad = restore(&restored);
        bad.active.insert(5_000, BTreeSet::from([(9, 9)]));
        let err = bincode::deserialize::<PnlEngine>(&bincode::serialize(&bad).unwrap())
            .err()
            .expect("rejected");
        assert!(err.to_string().contains("no position"), "{err}");
    }
}
