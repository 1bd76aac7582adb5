//! The profit-calculator job: `trades` → positions and P&L per trader and instrument →
//! `analytics` (`kind` `pnl`, key = trader; and `leaderboard`, key `leaderboard`).
//!
//! Each trade is a buy for one trader and a sell for another; [`kappa_analytics::PnlEngine`]
//! keeps average-cost positions (sequential, exact integers and fractions, rounded once when
//! published) and each window's activity. At every window close it reports each trader/instrument that traded,
//! marked to the last trade price and to the latest SMA of the shortest configured length (the
//! job runs its own [`kappa_analytics::BarEngine`] over the same trades for that).
//!
//! ## Totals, for the leaderboard
//! At each window close the job also publishes the partition's `totals` (`kind: "totals"`, key
//! `totals`): every trader's total P&L in the partition's instruments. A trader trades instruments
//! of several partitions; readers combine every partition's latest totals into the leaderboard
//! ([`super::leaderboard`]). Each partition's outputs depend on that partition's trades alone, so
//! restarts, rebalances and replays reproduce them exactly, and replicas can share the work.
//!
//! A partition's snapshot holds its positions, open windows, SMA marks and the trader names it has
//! seen (its own interning, so ids restore exactly).

use super::leaderboard::TOTALS_KEY;
use super::{AnalyticsArgs, TradeDecoder};
use crate::runtime::harness::{self, InProcess};
use crate::runtime::job::{Emitter, Job, Record};
use crate::runtime::kafka::KafkaArgs;
use crate::runtime::metrics::Counters;
use crate::runtime::processor;
use crate::runtime::shutdown::Shutdown;
use crate::runtime::snapshot;
use crate::topics::Topics;
use crate::wire::{money_exact, PnlMessage, TotalsMessage, TraderTotal};
use kappa_analytics::parquet::{window_file, write_table, Values};
use kappa_analytics::{BarEngine, Clock, PnlEngine, PnlRow, Ratio, TradeRow, WindowTotals};
use kappa_engine::Instruments;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most closed windows (each with every trader's total) held before they are published.
const MAX_PENDING_WINDOWS: usize = 16;

const ANALYTICS: usize = 0;
const REJECTS: usize = 1;

/// Per input partition.
#[derive(Serialize, Deserialize)]
pub struct ProfitState {
    /// Trader names of this partition, interned in their order of appearance here.
    decoder: TradeDecoder,
    pnl: PnlEngine,
    bars: BarEngine,
    clock: Clock,
    batch: Vec<TradeRow>,
    /// Latest SMA (shortest length) per instrument, in ticks.
    sma_mark: BTreeMap<u32, Decimal>,
}

/// The profit calculator.
pub struct ProfitJob {
    instruments: Instruments,
    args: AnalyticsArgs,
    topics: Topics,
}

fn round(d: Decimal) -> Decimal {
    crate::wire::money(d)
}

impl ProfitJob {
    pub fn new(instruments: Instruments, args: AnalyticsArgs, topics: Topics) -> Self {
        ProfitJob {
            instruments,
            args,
            topics,
        }
    }

    /// The message of one row: exact amounts rounded once, by the money rounding rule.
    fn pnl_message(
        st: &ProfitState,
        r: &PnlRow,
        sma_mark: Option<Decimal>,
    ) -> anyhow::Result<PnlMessage> {
        let (d, pnl) = (&st.decoder, &st.pnl);
        let i = r.instrument;
        let p = &r.position;
        let unit = pnl.unit_value(i);
        let trader = d.trader(r.trader);
        let rounded = |x: Option<Ratio>, factor: Decimal, what: &str| {
            x.and_then(|x| money_exact(x, factor)).ok_or_else(|| {
                anyhow::anyhow!(
                    "{what} of {trader} in {} does not fit a decimal",
                    d.symbol(i)
                )
            })
        };
        let money = |x: Option<Ratio>, what: &str| rounded(x, unit, what);
        let unrealized = money(p.unrealized(r.mark), "unrealized P&L")?;
        let realized = money(Some(p.realized()), "realized P&L")?;
        Ok(PnlMessage {
            kind: "pnl".into(),
            trader: trader.to_string(),
            instrument: d.symbol(i),
            end_ms: r.window_end,
            position: d.qty(i, p.quantity),
            avg_price: rounded(Some(p.avg_price()), d.tick_size(i), "average price")?,
            realized,
            unrealized,
            total: realized + unrealized,
            mark: d.price(i, r.mark),
            mark_sma: sma_mark.map(|s| d.price_of(i, s)),
            unrealized_sma: sma_mark
                .map(|s| money(p.unrealized(s), "unrealized P&L at the SMA"))
                .transpose()?,
            volume: d.qty(i, p.volume),
            notional: money(Some(Ratio::int(p.notional)), "notional")?,
            window_bought: d.qty(i, r.window_bought),
            window_sold: d.qty(i, r.window_sold),
        })
    }

    /// Publishes, window by window, the P&L rows then the totals (keeping SMA marks current as
    /// of each window). Window by window: how many windows one call closes depends on batching,
    /// and the sequence of outputs must not.
    ///
    /// `bars` are the whole batch's; `next_bar` is how many of them earlier calls for the batch
    /// used, and the `last` call applies the rest to the SMA marks.
    #[allow(clippy::too_many_arguments)]
    fn publish(
        &mut self,
        st: &mut ProfitState,
        bars: &[kappa_analytics::Bar],
        next_bar: &mut usize,
        rows: &[PnlRow],
        totals: Vec<WindowTotals>,
        last: bool,
        out: &mut Emitter<'_>,
    ) -> anyhow::Result<()> {
        let next_bar_in = next_bar;
        let mut next_bar = *next_bar_in;
        let mut messages = Vec::with_capacity(rows.len());
        // Canonical order within a window: by trader *name* and instrument (ids are interned in
        // arrival order, which a snapshot preserves but a name order does not need).
        let mut rows: Vec<&PnlRow> = rows.iter().collect();
        let d = &st.decoder;
        rows.sort_by(|a, b| {
            (a.window_end, d.trader(a.trader), a.instrument).cmp(&(
                b.window_end,
                d.trader(b.trader),
                b.instrument,
            ))
        });
        let mut totals = totals.into_iter().peekable();
        let mut rows = rows.into_iter().peekable();
        loop {
            // The next window to publish: the earliest among rows and totals.
            let window = match (rows.peek(), totals.peek()) {
                (None, None) => break,
                (Some(r), None) => r.window_end,
                (None, Some(t)) => t.window_end,
                (Some(r), Some(t)) => r.window_end.min(t.window_end),
            };
            while next_bar < bars.len() && bars[next_bar].end_ms <= window {
                let b = &bars[next_bar];
                if let Some((n, Some(sum))) = b.sma_sums.first() {
                    st.sma_mark
                        .insert(b.instrument, Decimal::from(*sum) / Decimal::from(*n as u64));
                }
                next_bar += 1;
            }
            while let Some(r) = rows.next_if(|r| r.window_end == window) {
                let msg = Self::pnl_message(st, r, st.sma_mark.get(&r.instrument).copied())?;
                out.set_event_time(r.window_end);
                out.emit(ANALYTICS, msg.trader.as_bytes(), &msg)?;
                out.count_items(1);
                messages.push(msg);
            }
            // Every trader's total at the window's close, by name.
            while let Some(t) = totals.next_if(|t| t.window_end == window) {
                let mut traders: Vec<TraderTotal> = t
                    .totals
                    .into_iter()
                    .map(|(trader, total)| TraderTotal {
                        trader: st.decoder.trader(trader).to_string(),
                        total: round(total),
                    })
                    .collect();
                traders.sort_by(|a, b| a.trader.cmp(&b.trader));
                let msg = TotalsMessage {
                    kind: "totals".into(),
                    end_ms: t.window_end,
                    partition: out.partition(),
                    traders,
                };
                out.set_event_time(t.window_end);
                out.emit(ANALYTICS, TOTALS_KEY.as_bytes(), &msg)?;
            }
        }
        if last {
            for b in &bars[next_bar..] {
                if let Some((n, Some(sum))) = b.sma_sums.first() {
                    st.sma_mark
                        .insert(b.instrument, Decimal::from(*sum) / Decimal::from(*n as u64));
                }
            }
            next_bar = bars.len();
        }
        *next_bar_in = next_bar;
        // Deterministic files, replaced atomically: written on replay too (backfills).
        if let Some(dir) = &self.args.parquet_dir {
            write_pnl_parquet(dir, out.partition(), &messages)?;
        }
        Ok(())
    }
}

fn write_pnl_parquet(
    dir: &std::path::Path,
    partition: i32,
    msgs: &[PnlMessage],
) -> anyhow::Result<()> {
    for w in msgs.chunk_by(|a, b| a.end_ms == b.end_ms) {
        let end_ms = w[0].end_ms;
        let s = |f: &dyn Fn(&PnlMessage) -> String| Values::Str(w.iter().map(f).collect());
        let path = window_file(dir, "pnl", end_ms, partition);
        write_table(
            &path,
            vec![
                ("trader", s(&|m| m.trader.clone())),
                ("instrument", s(&|m| m.instrument.clone())),
                ("end_ms", Values::I64(w.iter().map(|m| m.end_ms).collect())),
                ("position", s(&|m| m.position.to_string())),
                ("avg_price", s(&|m| m.avg_price.to_string())),
                ("realized", s(&|m| m.realized.to_string())),
                ("unrealized", s(&|m| m.unrealized.to_string())),
                ("total", s(&|m| m.total.to_string())),
                ("mark", s(&|m| m.mark.to_string())),
            ],
        )?;
    }
    Ok(())
}

impl Job for ProfitJob {
    type State = ProfitState;

    fn name(&self) -> &'static str {
        "profit-calculator"
    }

    fn instruments(&self) -> &Instruments {
        &self.instruments
    }

    fn input(&self) -> String {
        self.topics.trades.clone()
    }

    fn outputs(&self) -> Vec<String> {
        vec![self.topics.analytics.clone(), self.topics.rejects.clone()]
    }

    fn rejects(&self) -> usize {
        REJECTS
    }

    fn reject_reasons(&self) -> Vec<&'static str> {
        // Trades that do not decode, late ones, traders past --max-traders, and the
        // instrument table's price/quantity checks (the engine's codes).
        crate::wire::reasons_with_engine_codes(&["invalid_trade", "late_trade", "trader_limit"])
    }

    fn new_state(&mut self, _partition: i32) -> ProfitState {
        let spec = self.args.spec();
        let shortest = self
            .args
            .sma
            .iter()
            .copied()
            .filter(|&n| n > 0)
            .min()
            .map_or(vec![], |n| vec![n]);
        let decoder = TradeDecoder::new(self.instruments.clone(), self.args.max_traders);
        ProfitState {
            pnl: PnlEngine::new(spec, decoder.unit_values()),
            decoder,
            bars: BarEngine::new(spec, &shortest),
            clock: Clock::new(spec),
            batch: Vec::new(),
            sma_mark: BTreeMap::new(),
        }
    }

    fn fingerprint(&self) -> String {
        self.args.fingerprint(&self.instruments)
    }

    fn save(&self, _partition: i32, st: &ProfitState) -> anyhow::Result<Vec<u8>> {
        snapshot::to_bytes(st)
    }

    fn load(&mut self, _partition: i32, bytes: &[u8]) -> anyhow::Result<ProfitState> {
        let mut st: ProfitState = snapshot::from_bytes(bytes)?;
        st.decoder.set_max_traders(self.args.max_traders);
        Ok(st)
    }

    fn handle(
        &mut self,
        st: &mut Self::State,
        m: &Record<'_>,
        out: &mut Emitter<'_>,
    ) -> anyhow::Result<()> {
        if let Some(row) = super::admit(&mut st.decoder, &mut st.clock, m, out)? {
            st.batch.push(row);
        }
        Ok(())
    }

    fn after_batch(&mut self, st: &mut ProfitState, out: &mut Emitter<'_>) -> anyhow::Result<()> {
        let batch = std::mem::take(&mut st.batch);
        let bars = st.bars.push(&batch)?.bars;
        // A closed window holds every trader's total until published: a batch that closes many
        // windows (a replay of sparse trading) is published MAX_PENDING_WINDOWS at a time.
        let (mut rest, mut next_bar) = (&batch[..], 0);
        loop {
            let (pnl, used) = st.pnl.push_bounded(rest, MAX_PENDING_WINDOWS)?;
            rest = &rest[used..];
            let last = rest.is_empty();
            self.publish(st, &bars, &mut next_bar, &pnl.rows, pnl.totals, last, out)?;
            if last {
                return Ok(());
            }
        }
    }

    fn end_of_input(&mut self, st: &mut ProfitState, out: &mut Emitter<'_>) -> anyhow::Result<()> {
        self.after_batch(st, out)?;
        let bars = st.bars.flush()?;
        let pnl = st.pnl.flush()?;
        self.publish(st, &bars, &mut 0, &pnl.rows, pnl.totals, true, out)
    }
}

/// Runs the profit calculator.
pub fn run(
    kafka: &KafkaArgs,
    instruments: &Instruments,
    args: &AnalyticsArgs,
    shutdown: &Shutdown,
    counters: &Counters,
) -> anyhow::Result<()> {
    let mut job = ProfitJob::new(instruments.clone(), args.clone(), args.topics(kafka));
    let opts = args.loop_options(kafka, job.name());
    processor::run(&mut job, kafka, &opts, shutdown, counters)
}

/// Starts [`run`] on a thread of this process (demo, benchmarks).
pub fn spawn(
    kafka: &KafkaArgs,
    instruments: &Instruments,
    args: AnalyticsArgs,
) -> anyhow::Result<InProcess> {
    let (kafka, instruments) = (kafka.clone(), instruments.clone());
    harness::spawn("profit-calculator", move |stop, counters| {
        run(&kafka, &instruments, &args, stop, counters)
    })
}
