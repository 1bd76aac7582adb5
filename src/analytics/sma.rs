//! The SMA-calculator job: `trades` → OHLCV bars and simple moving averages per instrument and
//! event-time window → `analytics` (`kind` `bar` and `sma`, key = instrument).
//!
//! Trades accumulate per partition into micro-batches (as large as the poll loop delivers under
//! load, flushed on the 100 ms poll timeout when idle); each batch is one Polars computation
//! ([`kappa_analytics::BarEngine`]). Late trades (their window already closed when they arrived)
//! go to `rejects` as `late_trade`, in arrival order, and are counted. Outputs do not depend on
//! batching, so replay after a restart reproduces them exactly. A partition's state (open
//! windows, the closes its SMAs still need, its lateness clock) is what its snapshots hold.

use super::{AnalyticsArgs, TradeDecoder};
use crate::runtime::harness::{self, InProcess};
use crate::runtime::job::{Emitter, Job, Record};
use crate::runtime::kafka::KafkaArgs;
use crate::runtime::metrics::Counters;
use crate::runtime::processor;
use crate::runtime::shutdown::Shutdown;
use crate::runtime::snapshot;
use crate::topics::Topics;
use crate::wire::{BarMessage, SmaMessage, SmaValue};
use kappa_analytics::parquet::{window_file, write_table, Values};
use kappa_analytics::{Bar, BarEngine, Clock, TradeRow};
use kappa_engine::Instruments;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

const ANALYTICS: usize = 0;
const REJECTS: usize = 1;

/// Per input partition.
#[derive(Serialize, Deserialize)]
pub struct SmaState {
    engine: BarEngine,
    /// Decides lateness in arrival order, exactly as the engine's own clock does.
    clock: Clock,
    batch: Vec<TradeRow>,
}

/// The SMA calculator.
pub struct SmaJob {
    decoder: TradeDecoder,
    args: AnalyticsArgs,
    topics: Topics,
}

impl SmaJob {
    pub fn new(instruments: Instruments, args: AnalyticsArgs, topics: Topics) -> Self {
        SmaJob {
            // Bars and SMAs need no trader names: none are kept.
            decoder: TradeDecoder::without_traders(instruments),
            args,
            topics,
        }
    }

    fn publish(&mut self, bars: &[Bar], out: &mut Emitter<'_>) -> anyhow::Result<()> {
        for b in bars {
            out.set_event_time(b.end_ms);
            let bar = self.bar_message(b);
            out.emit(ANALYTICS, bar.instrument.as_bytes(), &bar)?;
            let sma = SmaMessage {
                kind: "sma".into(),
                instrument: bar.instrument.clone(),
                end_ms: b.end_ms,
                close: bar.close,
                sma: b
                    .sma_sums
                    .iter()
                    .map(|&(n, sum)| SmaValue {
                        n,
                        value: sum.map(|s| {
                            self.decoder
                                .price_of(b.instrument, Decimal::from(s) / Decimal::from(n as u64))
                        }),
                    })
                    .collect(),
            };
            out.emit(ANALYTICS, sma.instrument.as_bytes(), &sma)?;
            out.count_items(1);
        }
        // Files are deterministic and replaced atomically, so they are written on replay too: a
        // backfill in a fresh group regenerates the history even though the topic already has it.
        if let Some(dir) = &self.args.parquet_dir {
            self.write_parquet(dir, out.partition(), bars)?;
        }
        Ok(())
    }

    fn bar_message(&self, b: &Bar) -> BarMessage {
        let d = &self.decoder;
        BarMessage {
            kind: "bar".into(),
            instrument: d.symbol(b.instrument),
            start_ms: b.start_ms,
            end_ms: b.end_ms,
            open: d.price(b.instrument, b.open),
            high: d.price(b.instrument, b.high),
            low: d.price(b.instrument, b.low),
            close: d.price(b.instrument, b.close),
            volume: d.qty(b.instrument, b.volume),
            vwap: d.price_of(
                b.instrument,
                Decimal::from(b.notional) / Decimal::from(b.volume.max(1)),
            ),
            trades: b.trades,
        }
    }

    /// One file per closed window: `DIR/bars/window_end_ms=END/part-PARTITION.parquet`.
    fn write_parquet(
        &self,
        dir: &std::path::Path,
        partition: i32,
        bars: &[Bar],
    ) -> anyhow::Result<()> {
        for window in bars.chunk_by(|a, b| a.end_ms == b.end_ms) {
            let end_ms = window[0].end_ms;
            let msgs: Vec<BarMessage> = window.iter().map(|b| self.bar_message(b)).collect();
            let s = |f: &dyn Fn(&BarMessage) -> String| Values::Str(msgs.iter().map(f).collect());
            let path = window_file(dir, "bars", end_ms, partition);
            write_table(
                &path,
                vec![
                    ("instrument", s(&|m| m.instrument.clone())),
                    (
                        "start_ms",
                        Values::I64(msgs.iter().map(|m| m.start_ms).collect()),
                    ),
                    (
                        "end_ms",
                        Values::I64(msgs.iter().map(|m| m.end_ms).collect()),
                    ),
                    ("open", s(&|m| m.open.to_string())),
                    ("high", s(&|m| m.high.to_string())),
                    ("low", s(&|m| m.low.to_string())),
                    ("close", s(&|m| m.close.to_string())),
                    ("volume", s(&|m| m.volume.to_string())),
                    ("vwap", s(&|m| m.vwap.to_string())),
                    (
                        "trades",
                        Values::I64(msgs.iter().map(|m| m.trades).collect()),
                    ),
                ],
            )?;
        }
        Ok(())
    }
}

impl Job for SmaJob {
    type State = SmaState;

    fn name(&self) -> &'static str {
        "sma-calculator"
    }

    fn instruments(&self) -> &Instruments {
        self.decoder.instruments()
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
        // Trades that do not decode, late ones, and the
        // instrument table's price/quantity checks (the engine's codes).
        crate::wire::reasons_with_engine_codes(&["invalid_trade", "late_trade"])
    }

    fn new_state(&mut self, _partition: i32) -> SmaState {
        SmaState {
            engine: BarEngine::new(self.args.spec(), &self.args.sma),
            clock: Clock::new(self.args.spec()),
            batch: Vec::new(),
        }
    }

    fn fingerprint(&self) -> String {
        self.args.fingerprint(self.decoder.instruments())
    }

    fn save(&self, _partition: i32, st: &SmaState) -> anyhow::Result<Vec<u8>> {
        snapshot::to_bytes(st)
    }

    fn load(&mut self, _partition: i32, bytes: &[u8]) -> anyhow::Result<SmaState> {
        snapshot::from_bytes(bytes)
    }

    fn handle(
        &mut self,
        st: &mut Self::State,
        m: &Record<'_>,
        out: &mut Emitter<'_>,
    ) -> anyhow::Result<()> {
        if let Some(row) = super::admit(&mut self.decoder, &mut st.clock, m, out)? {
            st.batch.push(row);
        }
        Ok(())
    }

    fn after_batch(&mut self, st: &mut SmaState, out: &mut Emitter<'_>) -> anyhow::Result<()> {
        let batch = std::mem::take(&mut st.batch);
        let result = st.engine.push(&batch)?;
        debug_assert!(result.late.is_empty(), "lateness is decided in handle()");
        self.publish(&result.bars, out)
    }

    fn end_of_input(&mut self, st: &mut SmaState, out: &mut Emitter<'_>) -> anyhow::Result<()> {
        self.after_batch(st, out)?;
        let bars = st.engine.flush()?;
        self.publish(&bars, out)
    }
}

/// Runs the SMA calculator.
pub fn run(
    kafka: &KafkaArgs,
    instruments: &Instruments,
    args: &AnalyticsArgs,
    shutdown: &Shutdown,
    counters: &Counters,
) -> anyhow::Result<()> {
    let mut job = SmaJob::new(instruments.clone(), args.clone(), args.topics(kafka));
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
    harness::spawn("sma-calculator", move |stop, counters| {
        run(&kafka, &instruments, &args, stop, counters)
    })
}
