//! Market reports shared by the demo, `kappa simulate` and the benchmarks: per-instrument totals
//! (trades, volume, VWAP by the money rounding rule, last price, top of book), built in-process
//! or read back from the topics, the latest bars/SMAs and the leaderboard from `analytics`, and
//! their fixed-width rendering.

use crate::analytics::leaderboard::Leaderboard;
use crate::runtime::kafka::{create_reader, read_topic, KafkaArgs};
use crate::wire::{
    decode_analytics, AnalyticsMessage, BarMessage, BookMessage, SmaMessage, TradeMessage,
};
use kappa_engine::Instruments;
use rdkafka::message::Message;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

/// Per-instrument totals.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InstrumentSummary {
    pub symbol: String,
    pub trades: u64,
    pub volume: Decimal,
    pub notional: Decimal,
    pub last_price: Option<Decimal>,
    pub best_bid: Option<Decimal>,
    pub best_ask: Option<Decimal>,
}

impl InstrumentSummary {
    /// Volume-weighted average trade price, by the money rounding rule ([`crate::wire::money`]).
    pub fn vwap(&self) -> Option<Decimal> {
        (!self.volume.is_zero()).then(|| crate::wire::money(self.notional / self.volume))
    }
}

/// Whole-run totals.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    pub commands: usize,
    pub events: usize,
    pub rejects: usize,
    /// Resting orders at the end, when known (in-process runs).
    pub resting_orders: Option<usize>,
    pub instruments: Vec<InstrumentSummary>,
}

fn opt(d: Option<Decimal>) -> String {
    d.map_or_else(|| "-".to_string(), |d| d.to_string())
}

/// A fixed-width table of the summary.
pub fn render(summary: &Summary) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "{} commands -> {} events ({} rejected)",
        summary.commands, summary.events, summary.rejects
    );
    match summary.resting_orders {
        Some(n) => {
            let _ = writeln!(out, "; {n} orders resting");
        }
        None => out.push('\n'),
    }
    let _ = writeln!(
        out,
        "{:<10} {:>8} {:>12} {:>12} {:>12} {:>12} {:>12}",
        "symbol", "trades", "volume", "vwap", "last", "bid", "ask"
    );
    for s in summary
        .instruments
        .iter()
        .filter(|s| s.trades > 0 || s.best_bid.is_some() || s.best_ask.is_some())
    {
        let _ = writeln!(
            out,
            "{:<10} {:>8} {:>12} {:>12} {:>12} {:>12} {:>12}",
            s.symbol,
            s.trades,
            s.volume,
            opt(s.vwap()),
            opt(s.last_price),
            opt(s.best_bid),
            opt(s.best_ask)
        );
    }
    out
}

/// Builds the market summary from the `trades` and `book` topics.
pub fn summarize_topics(
    kafka: &KafkaArgs,
    instruments: &Instruments,
) -> anyhow::Result<(Summary, u64)> {
    let topics = kafka.topics();
    let reader = create_reader(&kafka.reader())?;
    let mut by_symbol: HashMap<String, InstrumentSummary> = HashMap::new();
    let mut trades = 0u64;
    read_topic(&reader, &topics.trades, |m| {
        if let Some(t) = m
            .payload()
            .and_then(|p| serde_json::from_slice::<TradeMessage>(p).ok())
        {
            trades += 1;
            let s = by_symbol.entry(t.instrument.clone()).or_default();
            s.trades += 1;
            s.volume += t.quantity;
            s.notional += t.price * t.quantity;
            s.last_price = Some(t.price);
        }
    })?;
    let mut newest: HashMap<String, (i64, BookMessage)> = HashMap::new();
    read_topic(&reader, &topics.book, |m| {
        if let Some(b) = m
            .payload()
            .and_then(|p| serde_json::from_slice::<BookMessage>(p).ok())
        {
            let keep = newest
                .get(&b.instrument)
                .is_none_or(|(off, _)| b.as_of_offset >= *off);
            if keep {
                newest.insert(b.instrument.clone(), (b.as_of_offset, b));
            }
        }
    })?;
    let mut summary = Summary::default();
    for id in instruments.ids() {
        let symbol = instruments.symbol(id).to_string();
        let mut s = by_symbol.remove(&symbol).unwrap_or_default();
        s.symbol = symbol.clone();
        if let Some((_, b)) = newest.get(&symbol) {
            s.best_bid = b.bids.first().map(|l| l.price);
            s.best_ask = b.asks.first().map(|l| l.price);
        }
        summary.instruments.push(s);
    }
    Ok((summary, trades))
}

/// The latest bar and SMAs per instrument and the latest leaderboard, from `analytics`.
pub fn render_analytics(kafka: &KafkaArgs) -> anyhow::Result<String> {
    use std::fmt::Write as _;
    let reader = create_reader(&kafka.reader())?;
    let mut bars: BTreeMap<String, BarMessage> = BTreeMap::new();
    let mut smas: BTreeMap<String, SmaMessage> = BTreeMap::new();
    let mut totals = Leaderboard::default();
    read_topic(&reader, &kafka.topics().analytics, |m| {
        let Some(p) = m.payload() else { return };
        match decode_analytics(p) {
            Ok(AnalyticsMessage::Bar(b))
                if bars.get(&b.instrument).is_none_or(|o| o.end_ms <= b.end_ms) =>
            {
                bars.insert(b.instrument.clone(), b);
            }
            Ok(AnalyticsMessage::Sma(x))
                if smas.get(&x.instrument).is_none_or(|o| o.end_ms <= x.end_ms) =>
            {
                smas.insert(x.instrument.clone(), x);
            }
            Ok(AnalyticsMessage::Totals(t)) => {
                totals.apply(t);
            }
            _ => {}
        }
    })?;
    let mut out = String::new();
    let _ = writeln!(out, "latest 1s bars (analytics topic):");
    let _ = writeln!(
        out,
        "{:<10} {:>24} {:>10} {:>10} {:>10} {:>10} {:>8} {:>12} {:>12} {:>12}",
        "symbol",
        "window end (UTC)",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "vwap",
        "sma5",
        "sma20"
    );
    for (sym, b) in &bars {
        let sma = |n: usize| {
            smas.get(sym)
                .filter(|s| s.end_ms == b.end_ms)
                .and_then(|s| s.sma.iter().find(|v| v.n == n).and_then(|v| v.value))
                .map_or("-".to_string(), |v| v.to_string())
        };
        let end = crate::wire::format_timestamp(b.end_ms);
        let _ = writeln!(
            out,
            "{sym:<10} {end:>24} {:>10} {:>10} {:>10} {:>10} {:>8} {:>12} {:>12} {:>12}",
            b.open,
            b.high,
            b.low,
            b.close,
            b.volume,
            b.vwap,
            sma(5),
            sma(20)
        );
    }
    if let Some(l) = totals.board(5) {
        let _ = writeln!(
            out,
            "top traders by P&L at {} (realized + unrealized at last price):",
            crate::wire::format_timestamp(l.end_ms)
        );
        for e in l.top.iter().take(5) {
            let _ = writeln!(out, "  {:>2}. {:<8} {:>14}", e.rank, e.trader, e.total);
        }
    }
    Ok(out)
}
