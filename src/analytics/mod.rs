//! The analytics jobs (the Kappa speed layer's serving views): the SMA calculator ([`sma`]) and
//! the profit calculator ([`profit`]). Both consume `trades`, compute in Polars
//! ([`kappa_analytics`]) and publish to `analytics`; this module holds what they share: settings,
//! decoding trades into exact integer units, and decimal conversions of results.

pub mod leaderboard;
pub mod profit;
pub mod sma;

use crate::runtime::job::{Emitter, Record};
use crate::runtime::kafka::KafkaArgs;
use crate::runtime::processor::{LoopArgs, Options};
use crate::topics::Topics;
use crate::wire::{InputError, TradeFields};
use kappa_analytics::Clock;
use kappa_analytics::{TradeRow, WindowSpec};
use kappa_engine::{InstrumentId, Instruments};
use rust_decimal::Decimal;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// Settings shared by both analytics jobs.
#[derive(clap::Args, Clone, Debug)]
pub struct AnalyticsArgs {
    /// Event-time window length (e.g. 500ms, 1s, 1m).
    #[arg(long, default_value = "1s", value_parser = parse_window_ms)]
    pub window: i64,
    /// Allowed lateness: a window closes when the newest event time passes its end by this much.
    #[arg(long, default_value = "0s", value_parser = parse_duration_ms)]
    pub lateness: i64,
    /// SMA lengths in bars, comma-separated.
    #[arg(long, default_value = "5,20", value_delimiter = ',')]
    pub sma: Vec<usize>,
    /// Also write each closed window's results to Parquet files under this directory.
    #[arg(long)]
    pub parquet_dir: Option<PathBuf>,
    /// Consumer group (a fresh one replays everything from the earliest offset).
    #[arg(long)]
    pub group: Option<String>,
    /// Read from the earliest offset (always true: state is rebuilt by replay; accepted for clarity).
    #[arg(long)]
    pub from_beginning: bool,
    /// Batch mode: stop at the end offsets seen at start, close all windows, publish and exit 0.
    #[arg(long)]
    pub until_end: bool,
    /// Most distinct traders per `trades` partition (the profit calculator's P&L tables; ≈ 1 kB
    /// per trader and instrument traded): a trade by one more trader is rejected `trader_limit`
    /// (bounded, counted), never silently dropped.
    #[arg(long, default_value_t = DEFAULT_MAX_TRADERS)]
    pub max_traders: usize,
    /// Most trades per micro-batch (batches grow to this under load; idle flushes come sooner).
    #[arg(long, default_value_t = 100_000)]
    pub batch_size: usize,
    /// Exit once caught up and idle for this many milliseconds.
    #[arg(long)]
    pub idle_exit_ms: Option<u64>,
    /// Prefix for the output topics only (analytics, rejects, the job's changelog), e.g.
    /// `replay.` for a backfill side by side with the live topics (they must exist).
    #[arg(long)]
    pub output_prefix: Option<String>,
    #[command(flatten)]
    pub runtime: LoopArgs,
}

impl AnalyticsArgs {
    pub fn spec(&self) -> WindowSpec {
        WindowSpec {
            length_ms: self.window,
            lateness_ms: self.lateness,
        }
    }

    /// Input topics as configured, outputs (analytics, rejects) with `--output-prefix`.
    pub fn topics(&self, kafka: &KafkaArgs) -> Topics {
        let out = kafka.output_topics(self.output_prefix.as_deref());
        Topics {
            analytics: out.analytics,
            rejects: out.rejects,
            ..kafka.topics()
        }
    }

    /// The loop settings for job `job` (also its default group).
    pub fn loop_options(&self, kafka: &KafkaArgs, job: &str) -> Options {
        let group = self.group.clone().unwrap_or_else(|| job.to_string());
        let changelog = kafka.changelog_topic(self.output_prefix.as_deref(), job);
        Options {
            batch_size: self.batch_size.max(1),
            idle_exit: self.idle_exit_ms.map(Duration::from_millis),
            until_end: self.until_end,
            ..Options::new(group, changelog, &self.runtime)
        }
    }

    /// What the analytics state depends on besides the input.
    pub fn fingerprint(&self, instruments: &Instruments) -> String {
        format!(
            "analytics state v{}, window {} ms, lateness {} ms, sma {:?}, max traders {}, instruments {}",
            kappa_analytics::STATE_VERSION,
            self.window,
            self.lateness,
            self.sma,
            self.max_traders,
            crate::config::instruments_fingerprint(instruments)
        )
    }
}

impl Default for AnalyticsArgs {
    fn default() -> Self {
        AnalyticsArgs {
            window: 1_000,
            lateness: 0,
            sma: vec![5, 20],
            parquet_dir: None,
            group: None,
            from_beginning: false,
            until_end: false,
            max_traders: DEFAULT_MAX_TRADERS,
            batch_size: 100_000,
            idle_exit_ms: None,
            output_prefix: None,
            runtime: LoopArgs::default(),
        }
    }
}

/// Default [`AnalyticsArgs::max_traders`].
pub const DEFAULT_MAX_TRADERS: usize = 100_000;

/// Parses `250ms`, `1s`, `2m`, `1h` (or a bare number of milliseconds).
pub fn parse_duration_ms(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: i64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 500ms, 1s, 1m"))?;
    let ms = match unit {
        "" | "ms" => n,
        "s" => n * 1_000,
        "m" => n * 60_000,
        "h" => n * 3_600_000,
        _ => return Err(format!("{s:?}: unit must be ms, s, m or h")),
    };
    Ok(ms)
}

/// A window length: a positive duration.
pub fn parse_window_ms(s: &str) -> Result<i64, String> {
    match parse_duration_ms(s)? {
        0 => Err(format!("{s:?}: the window must be longer than 0")),
        ms => Ok(ms),
    }
}

/// Decodes one `trades` message and decides its lateness in arrival order: returns the row to
/// add to the micro-batch, or publishes the reject (`invalid_trade`, `late_trade`, …) and
/// returns `None`.
pub fn admit(
    decoder: &mut TradeDecoder,
    clock: &mut Clock,
    m: &Record<'_>,
    out: &mut Emitter<'_>,
) -> anyhow::Result<Option<TradeRow>> {
    let key = m.key;
    match decoder.decode(m.payload) {
        Err(e) => out.reject(m, key, e.reason, e.detail).map(|_| None),
        Ok(row) => {
            if clock.admit(row.ts_ms).is_none() {
                let detail = format!(
                    "trade at {} ms arrived after its {} ms window closed (watermark {})",
                    row.ts_ms,
                    clock.spec().length_ms,
                    clock.watermark()
                );
                return out.reject(m, key, "late_trade", detail).map(|_| None);
            }
            Ok(Some(row))
        }
    }
}

/// Trade messages → exact integer rows, with trader names interned (ids in order of first
/// appearance), at most `max_traders` of them (a trade by one more is rejected `trader_limit`);
/// or, for jobs that do not need traders, not interned at all (ids 0). Serializes with the names
/// only (a snapshot restores the same ids; the limit is the job's setting, set again on load).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(from = "DecoderState", into = "DecoderState")]
pub struct TradeDecoder {
    instruments: Instruments,
    /// Fx: trader names are short, and the map is bounded by `max_traders`.
    ids: FxHashMap<String, u32>,
    names: Vec<String>,
    /// `None`: traders are not interned.
    max_traders: Option<usize>,
}

#[derive(Serialize, Deserialize)]
struct DecoderState {
    instruments: Instruments,
    names: Vec<String>,
}

impl From<DecoderState> for TradeDecoder {
    fn from(d: DecoderState) -> Self {
        let ids = d
            .names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i as u32))
            .collect();
        TradeDecoder {
            instruments: d.instruments,
            ids,
            names: d.names,
            max_traders: Some(usize::MAX),
        }
    }
}

impl From<TradeDecoder> for DecoderState {
    fn from(d: TradeDecoder) -> Self {
        DecoderState {
            instruments: d.instruments,
            names: d.names,
        }
    }
}

impl TradeDecoder {
    /// A decoder interning at most `max_traders` trader names.
    pub fn new(instruments: Instruments, max_traders: usize) -> Self {
        TradeDecoder {
            instruments,
            ids: FxHashMap::default(),
            names: Vec::new(),
            max_traders: Some(max_traders),
        }
    }

    /// A decoder that keeps no trader names (every trader id is 0): memory independent of them.
    pub fn without_traders(instruments: Instruments) -> Self {
        TradeDecoder {
            max_traders: None,
            ..Self::new(instruments, 0)
        }
    }

    /// Sets the trader limit (after a restore: it is a setting, not state).
    pub fn set_max_traders(&mut self, max_traders: usize) {
        if self.max_traders.is_some() {
            self.max_traders = Some(max_traders);
        }
    }

    /// Number of interned traders.
    pub fn traders(&self) -> usize {
        self.names.len()
    }

    pub fn instruments(&self) -> &Instruments {
        &self.instruments
    }

    fn intern(&mut self, name: &str) -> Result<u32, InputError> {
        let Some(max) = self.max_traders else {
            return Ok(0);
        };
        if let Some(&id) = self.ids.get(name) {
            return Ok(id);
        }
        if self.names.len() >= max {
            return Err(InputError {
                reason: "trader_limit",
                detail: format!(
                    "this partition already tracks {max} traders (--max-traders); the trade of {name:?} is not in P&L"
                ),
            });
        }
        let id = self.names.len() as u32;
        self.names.push(name.to_string());
        self.ids.insert(name.to_string(), id);
        Ok(id)
    }

    /// Name of an interned trader.
    pub fn trader(&self, id: u32) -> &str {
        &self.names[id as usize]
    }

    /// Decodes one `trades` message: only the fields the analytics use, borrowed from the payload
    /// ([`TradeFields`]); returns the row and the instrument's id.
    pub fn decode(&mut self, payload: &[u8]) -> Result<TradeRow, InputError> {
        let t = TradeFields::parse(payload).map_err(|e| InputError {
            reason: "invalid_trade",
            detail: e.to_string(),
        })?;
        let id = self
            .instruments
            .id(&t.instrument)
            .ok_or_else(|| InputError {
                reason: "unknown_instrument",
                detail: format!("instrument {:?}", t.instrument),
            })?;
        let price = self
            .instruments
            .price_to_ticks(id, t.price)
            .map_err(|r| InputError {
                reason: r.code(),
                detail: format!("price {}", t.price),
            })?;
        let quantity = self
            .instruments
            .qty_to_lots(id, t.quantity)
            .map_err(|r| InputError {
                reason: r.code(),
                detail: format!("quantity {}", t.quantity),
            })?;
        Ok(TradeRow {
            instrument: id.0 as u32,
            ts_ms: t.ts_ms,
            price,
            quantity: quantity as i64,
            buyer: self.intern(&t.buyer)?,
            seller: self.intern(&t.seller)?,
        })
    }

    /// Price of `ticks` of instrument `i`.
    pub fn price(&self, i: u32, ticks: i64) -> Decimal {
        self.instruments
            .ticks_to_price(InstrumentId(i as u16), ticks)
    }

    /// Decimal price of a (possibly fractional) number of ticks, by the money rounding rule
    /// ([`crate::wire::money`]).
    pub fn price_of(&self, i: u32, ticks: Decimal) -> Decimal {
        crate::wire::money(ticks * self.instruments.spec(InstrumentId(i as u16)).tick_size)
    }

    /// Tick size of instrument `i`.
    pub fn tick_size(&self, i: u32) -> Decimal {
        self.instruments.spec(InstrumentId(i as u16)).tick_size
    }

    /// Quantity of `lots` of instrument `i`.
    pub fn qty(&self, i: u32, lots: i64) -> Decimal {
        let q = self
            .instruments
            .lots_to_qty(InstrumentId(i as u16), lots.unsigned_abs());
        if lots < 0 {
            -q
        } else {
            q
        }
    }

    /// Money per (tick × lot) of each instrument.
    pub fn unit_values(&self) -> Vec<Decimal> {
        self.instruments
            .ids()
            .map(|i| self.instruments.spec(i).tick_size * self.instruments.spec(i).lot_size)
            .collect()
    }

    /// Symbol of instrument `i`.
    pub fn symbol(&self, i: u32) -> String {
        self.instruments.symbol(InstrumentId(i as u16)).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("1s"), Ok(1_000));
        assert_eq!(parse_duration_ms("250ms"), Ok(250));
        assert_eq!(parse_duration_ms("2m"), Ok(120_000));
        assert_eq!(parse_duration_ms("1500"), Ok(1_500));
        assert_eq!(parse_duration_ms("0s"), Ok(0), "zero lateness is fine");
        assert!(
            parse_window_ms("0s").is_err(),
            "a zero-length window is not"
        );
        assert!(parse_duration_ms("1 week").is_err());
        assert!(parse_duration_ms("x").is_err());
    }

    #[test]
    fn decoding_is_exact_and_interns_traders() {
        let mut d = TradeDecoder::new(crate::config::load_instruments(None).unwrap(), 100);
        let msg = br#"{"trade_id":1,"instrument":"TCS","price":15.05,"quantity":3,"buyer":"A","seller":"B","buy_order_id":1,"sell_order_id":2,"aggressor":"BUY","ts_ms":5}"#;
        let row = d.decode(msg).unwrap();
        assert_eq!(
            (
                row.price,
                row.quantity,
                row.buyer,
                row.seller,
                d.symbol(row.instrument).as_str()
            ),
            (301, 3, 0, 1, "TCS")
        );
        assert_eq!(d.decode(msg).unwrap().buyer, 0, "same name, same id");
        // Only the fields the analytics use are read: escaped names are unescaped (the same
        // trader as its plain spelling), numeric strings are decimals, unused fields may be
        // absent, extra fields are ignored.
        let lean = br#"{"ts_ms":6,"seller":"\u0041","buyer":"C\"D","quantity":"2","price":"15.10","instrument":"TCS","extra":[1,{"x":null}]}"#;
        let row = d.decode(lean).unwrap();
        assert_eq!(
            (row.ts_ms, row.price, row.quantity, row.buyer, row.seller),
            (6, 302, 2, 2, 0)
        );
        assert_eq!(d.trader(2), "C\"D");
        let missing_seller =
            br#"{"instrument":"TCS","price":15.05,"quantity":3,"buyer":"A","ts_ms":5}"#;
        assert_eq!(
            d.decode(missing_seller).unwrap_err().reason,
            "invalid_trade"
        );
        let float_ts = br#"{"instrument":"TCS","price":15.05,"quantity":3,"buyer":"A","seller":"B","ts_ms":5.5}"#;
        assert_eq!(d.decode(float_ts).unwrap_err().reason, "invalid_trade");
        assert_eq!(d.price(row.instrument, 301), Decimal::new(1505, 2));
        assert_eq!(
            d.qty(row.instrument, -3),
            Decimal::from(-3),
            "short positions keep their size"
        );
        assert_eq!(
            d.qty(row.instrument, i64::MIN + 1),
            -d.qty(row.instrument, i64::MAX)
        );
        assert_eq!(d.decode(b"{}").unwrap_err().reason, "invalid_trade");
        let off = br#"{"trade_id":1,"instrument":"TCS","price":15.01,"quantity":3,"buyer":"A","seller":"B","buy_order_id":1,"sell_order_id":2,"aggressor":"BUY","ts_ms":5}"#;
        assert_eq!(d.decode(off).unwrap_err().reason, "price_off_tick");
    }

    #[test]
    fn trader_tables_are_bounded_and_survive_a_restore() {
        let instruments = crate::config::load_instruments(None).unwrap();
        let trade = |buyer: &str, seller: &str| {
            format!(
                r#"{{"trade_id":1,"instrument":"TCS","price":15,"quantity":1,"buyer":"{buyer}","seller":"{seller}","buy_order_id":1,"sell_order_id":2,"aggressor":"BUY","ts_ms":5}}"#
            )
        };
        let mut d = TradeDecoder::new(instruments.clone(), 3);
        d.decode(trade("A", "B").as_bytes()).unwrap();
        d.decode(trade("C", "A").as_bytes()).unwrap();
        let refused = d.decode(trade("A", "D").as_bytes()).unwrap_err();
        assert_eq!(refused.reason, "trader_limit");
        assert!(
            refused.detail.contains("--max-traders"),
            "{}",
            refused.detail
        );
        assert_eq!(d.traders(), 3);
        d.decode(trade("B", "C").as_bytes()).unwrap(); // known traders still trade
                                                       // The limit is a setting: set again after a restore, the names are state.
        let mut back: TradeDecoder =
            serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
        back.set_max_traders(3);
        assert_eq!(
            back.decode(trade("A", "E").as_bytes()).unwrap_err().reason,
            "trader_limit"
        );
        assert_eq!(back.decode(trade("C", "B").as_bytes()).unwrap().buyer, 2);
        // Jobs that need no traders keep none.
        let mut bars = TradeDecoder::without_traders(instruments);
        for k in 0..1000 {
            let row = bars
                .decode(trade(&format!("X{k}"), "Y").as_bytes())
                .unwrap();
            assert_eq!((row.buyer, row.seller), (0, 0));
        }
        assert_eq!(bars.traders(), 0);
    }
}
