//! The profit-calculator job: `trades` → positions and P&L per trader and instrument →
//! `analytics` (`kind` `pnl`, key = trader; and `leaderboard`, key `leaderboard`).
//!
//! Each trade is a buy for one trader and a sell for another; [`kappa_analytics::PnlEngine`]
//! keeps average-cost positions (sequential, exact decimals) and aggregates each window's
//! activity with Polars. At every window close it reports each trader/instrument that traded,
//! marked to the last trade price and to the latest SMA of the shortest configured length (the
//! job runs its own [`kappa_analytics::BarEngine`] over the same trades for that).
//!
//! ## Leaderboard across partitions
//! An instrument's trades live in one partition, but a trader trades many instruments. Each
//! partition snapshots every trader's total P&L at each of its window closes. The leaderboard of a
//! window is published once the watermark of every partition that has seen trades has passed the
//! window's end, combining each partition's latest snapshot at or before it — so its content does
//! not depend on how partitions interleave. A partition that stops receiving trades holds the
//! leaderboard back until it moves again (or the input ends, in `--until-end` mode). Leaderboards
//! are published in window order and, after a restart, only for windows after the last one already
//! on the topic. Run one replica for a global leaderboard (the job is light); with several, each
//! ranks the traders of its own partitions.
//!
//! A partition's snapshot holds its positions, open windows, SMA marks, the trader names it has
//! seen (its own interning, so ids restore exactly), and its contribution to the leaderboard.

use super::{AnalyticsArgs, TradeDecoder};
use crate::runtime::harness::{self, InProcess};
use crate::runtime::job::{Emitter, Job, Record};
use crate::runtime::kafka::{scan_backwards, KafkaArgs};
use crate::runtime::metrics::Counters;
use crate::runtime::processor;
use crate::runtime::shutdown::Shutdown;
use crate::runtime::snapshot;
use crate::schema::{LeaderEntry, LeaderboardMessage, PnlMessage};
use crate::topics::{partition_for, Topics};
use anyhow::Context as _;
use kappa_analytics::parquet::{window_file, write_table, Values};
use kappa_analytics::{BarEngine, Clock, PnlEngine, PnlRow, TradeRow, WindowTotals};
use kappa_engine::Instruments;
use rdkafka::consumer::BaseConsumer;
use rdkafka::message::Message;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const ANALYTICS: usize = 0;
const REJECTS: usize = 1;
/// Key of leaderboard messages on `analytics`.
pub const LEADERBOARD_KEY: &str = "leaderboard";
/// Traders per leaderboard.
pub const LEADERBOARD_SIZE: usize = 10;

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

/// One partition's contribution to the leaderboard.
#[derive(Clone, Default, Serialize, Deserialize)]
struct PartitionTotals {
    /// Windows ending at or before this are closed in the partition.
    watermark: i64,
    /// Every trader's total P&L at each window close, by window end.
    snapshots: BTreeMap<i64, Vec<(String, Decimal)>>,
}

/// What a partition's snapshot holds: its state and its part of the job-wide leaderboard state.
#[derive(Serialize)]
struct SavedRef<'a> {
    state: &'a ProfitState,
    totals: Option<&'a PartitionTotals>,
    last_leaderboard: i64,
}

#[derive(Deserialize)]
struct Saved {
    state: ProfitState,
    totals: Option<PartitionTotals>,
    last_leaderboard: i64,
}

/// The profit calculator.
pub struct ProfitJob {
    instruments: Instruments,
    args: AnalyticsArgs,
    topics: Topics,
    /// Per partition that has seen trades.
    partitions: BTreeMap<i32, PartitionTotals>,
    /// End of the last leaderboard published (from the topic at start, then ours).
    last_leaderboard: i64,
}

fn round(d: Decimal) -> Decimal {
    d.round_dp(6)
}

impl ProfitJob {
    pub fn new(
        instruments: Instruments,
        args: AnalyticsArgs,
        topics: Topics,
        last_leaderboard: i64,
    ) -> Self {
        ProfitJob {
            instruments,
            args,
            topics,
            partitions: BTreeMap::new(),
            last_leaderboard,
        }
    }

    fn pnl_message(st: &ProfitState, r: &PnlRow, sma_mark: Option<Decimal>) -> PnlMessage {
        let (d, pnl) = (&st.decoder, &st.pnl);
        let i = r.instrument;
        let p = &r.position;
        let money = |x: Decimal| round(pnl.money(i, x));
        let mark = Decimal::from(r.mark);
        let unrealized = money(p.unrealized(mark));
        let realized = money(p.realized);
        PnlMessage {
            kind: "pnl".into(),
            trader: d.trader(r.trader).to_string(),
            instrument: d.symbol(i),
            end_ms: r.window_end,
            position: d.qty(i, p.quantity),
            avg_price: d.price_of(i, p.avg_price),
            realized,
            unrealized,
            total: realized + unrealized,
            mark: d.price(i, r.mark),
            mark_sma: sma_mark.map(|s| d.price_of(i, s)),
            unrealized_sma: sma_mark.map(|s| money(p.unrealized(s))),
            volume: d.qty(i, p.volume),
            notional: round(pnl.money(i, Decimal::from(p.notional))),
            window_bought: d.qty(i, r.window_bought),
            window_sold: d.qty(i, r.window_sold),
        }
    }

    /// Publishes P&L rows (window order), keeping SMA marks current as of each window.
    fn publish(
        &mut self,
        st: &mut ProfitState,
        bars: &[kappa_analytics::Bar],
        rows: &[PnlRow],
        totals: Vec<WindowTotals>,
        out: &mut Emitter<'_>,
    ) -> anyhow::Result<()> {
        let mut next_bar = 0;
        let mut messages = Vec::with_capacity(rows.len());
        // Canonical order within a window: by trader *name* and instrument. (Trader ids are
        // interned in arrival order across partitions, which differs between runs; the replay
        // that makes outputs exactly-once needs the same order every time.)
        let mut rows: Vec<&PnlRow> = rows.iter().collect();
        let d = &st.decoder;
        rows.sort_by(|a, b| {
            (a.window_end, d.trader(a.trader), a.instrument).cmp(&(
                b.window_end,
                d.trader(b.trader),
                b.instrument,
            ))
        });
        for r in rows {
            while next_bar < bars.len() && bars[next_bar].end_ms <= r.window_end {
                let b = &bars[next_bar];
                if let Some((n, Some(sum))) = b.sma_sums.first() {
                    st.sma_mark
                        .insert(b.instrument, Decimal::from(*sum) / Decimal::from(*n as u64));
                }
                next_bar += 1;
            }
            let msg = Self::pnl_message(st, r, st.sma_mark.get(&r.instrument).copied());
            out.set_event_time(r.window_end);
            out.emit(ANALYTICS, msg.trader.as_bytes(), &msg)?;
            out.count_items(1);
            messages.push(msg);
        }
        for b in &bars[next_bar..] {
            if let Some((n, Some(sum))) = b.sma_sums.first() {
                st.sma_mark
                    .insert(b.instrument, Decimal::from(*sum) / Decimal::from(*n as u64));
            }
        }
        // Deterministic files, replaced atomically: written on replay too (backfills).
        if let Some(dir) = &self.args.parquet_dir {
            write_pnl_parquet(dir, out.partition(), &messages)?;
        }
        // Hand this partition's window totals to the leaderboard.
        let entry = self.partitions.entry(out.partition()).or_default();
        entry.watermark = st.pnl.watermark();
        for t in totals {
            let named = t
                .totals
                .into_iter()
                .map(|(trader, total)| (st.decoder.trader(trader).to_string(), total))
                .collect();
            entry.snapshots.insert(t.window_end, named);
        }
        self.publish_leaderboards(out)
    }

    /// Publishes every leaderboard whose window all partitions with trades have closed.
    fn publish_leaderboards(&mut self, out: &mut Emitter<'_>) -> anyhow::Result<()> {
        let closed_through = self
            .partitions
            .values()
            .map(|p| p.watermark)
            .min()
            .unwrap_or(i64::MIN);
        let mut windows: Vec<i64> = self
            .partitions
            .values()
            .flat_map(|p| p.snapshots.keys().copied())
            .filter(|&end| end > self.last_leaderboard && end <= closed_through)
            .collect();
        windows.sort_unstable();
        windows.dedup();
        for end in windows {
            let mut totals: BTreeMap<&str, Decimal> = BTreeMap::new();
            for p in self.partitions.values() {
                if let Some((_, snap)) = p.snapshots.range(..=end).next_back() {
                    for (trader, total) in snap {
                        *totals.entry(trader.as_str()).or_default() += *total;
                    }
                }
            }
            let mut ranked: Vec<(&str, Decimal)> = totals.into_iter().collect();
            ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            let top = ranked
                .into_iter()
                .take(LEADERBOARD_SIZE)
                .enumerate()
                .map(|(k, (trader, total))| LeaderEntry {
                    rank: k + 1,
                    trader: trader.to_string(),
                    total: round(total),
                })
                .collect();
            let msg = LeaderboardMessage {
                kind: "leaderboard".into(),
                end_ms: end,
                top,
            };
            out.set_event_time(end);
            out.emit_once(&self.topics.analytics, LEADERBOARD_KEY.as_bytes(), &msg)?;
            self.last_leaderboard = end;
        }
        // Keep, per partition, only the newest snapshot at or before the last leaderboard.
        let last = self.last_leaderboard;
        for p in self.partitions.values_mut() {
            if let Some((&keep, _)) = p.snapshots.range(..=last).next_back() {
                p.snapshots = p.snapshots.split_off(&keep);
            }
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

    fn input(&self) -> String {
        self.topics.trades.clone()
    }

    fn outputs(&self) -> Vec<String> {
        vec![self.topics.analytics.clone(), self.topics.rejects.clone()]
    }

    /// Leaderboards, outside the sequence space.
    fn state_outputs(&self) -> Vec<String> {
        vec![self.topics.analytics.clone()]
    }

    fn rejects(&self) -> usize {
        REJECTS
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
        let decoder = TradeDecoder::new(self.instruments.clone());
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

    fn save(&self, partition: i32, st: &ProfitState) -> anyhow::Result<Vec<u8>> {
        snapshot::to_bytes(&SavedRef {
            state: st,
            totals: self.partitions.get(&partition),
            last_leaderboard: self.last_leaderboard,
        })
    }

    fn load(&mut self, partition: i32, bytes: &[u8]) -> anyhow::Result<ProfitState> {
        let saved: Saved = snapshot::from_bytes(bytes)?;
        if let Some(t) = saved.totals {
            self.partitions.insert(partition, t);
        }
        self.last_leaderboard = self.last_leaderboard.max(saved.last_leaderboard);
        Ok(saved.state)
    }

    fn handle(
        &mut self,
        st: &mut Self::State,
        m: &Record<'_>,
        out: &mut Emitter<'_>,
    ) -> anyhow::Result<()> {
        if let Some(row) = super::admit(&mut st.decoder, &mut st.clock, m, out)? {
            self.partitions.entry(out.partition()).or_default();
            st.batch.push(row);
        }
        Ok(())
    }

    fn after_batch(&mut self, st: &mut ProfitState, out: &mut Emitter<'_>) -> anyhow::Result<()> {
        let batch = std::mem::take(&mut st.batch);
        let bars = st.bars.push(&batch)?.bars;
        let pnl = st.pnl.push(&batch)?;
        self.publish(st, &bars, &pnl.rows, pnl.totals, out)
    }

    fn end_of_input(&mut self, st: &mut ProfitState, out: &mut Emitter<'_>) -> anyhow::Result<()> {
        self.after_batch(st, out)?;
        let bars = st.bars.flush()?;
        let pnl = st.pnl.flush()?;
        self.publish(st, &bars, &pnl.rows, pnl.totals, out)
    }

    fn revoked(&mut self, partitions: &[i32]) {
        for p in partitions {
            self.partitions.remove(p);
        }
    }
}

/// End of the last leaderboard already on `analytics` (`i64::MIN` if none).
pub fn last_leaderboard_on_topic(kafka: &KafkaArgs, topics: &Topics) -> anyhow::Result<i64> {
    let reader: BaseConsumer = kafka.reader().create()?;
    let n = crate::runtime::kafka::partition_count(&reader, &topics.analytics)?;
    let q = partition_for(LEADERBOARD_KEY.as_bytes(), n);
    // Leaderboards are published in window order: the highest end seen is the last one.
    let mut last: Option<i64> = None;
    scan_backwards(
        &reader,
        &topics.analytics,
        q,
        -1,
        &mut last,
        |last, m| {
            if m.key() == Some(LEADERBOARD_KEY.as_bytes()) {
                if let Some(l) = m
                    .payload()
                    .and_then(|p| serde_json::from_slice::<LeaderboardMessage>(p).ok())
                {
                    *last = Some(last.map_or(l.end_ms, |x: i64| x.max(l.end_ms)));
                }
            }
        },
        Option::is_some,
    )?;
    Ok(last.unwrap_or(i64::MIN))
}

/// Runs the profit calculator.
pub fn run(
    kafka: &KafkaArgs,
    instruments: &Instruments,
    args: &AnalyticsArgs,
    shutdown: &Shutdown,
    counters: &Counters,
) -> anyhow::Result<()> {
    let topics = args.topics(kafka);
    let last = last_leaderboard_on_topic(kafka, &topics)
        .context("finding the last published leaderboard")?;
    let mut job = ProfitJob::new(instruments.clone(), args.clone(), topics, last);
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
