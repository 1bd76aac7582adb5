//! `analytics` (the serving topic): bars, SMAs, P&L, totals — and the one decoder of it.

use super::decimal::json_decimal;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// The `kind` of an `analytics` message (read this first, then the matching struct).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct AnalyticsKind {
    pub kind: String,
}

/// `kind: "bar"` — OHLCV of one instrument over one event-time window `[start_ms, end_ms)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BarMessage {
    #[schema(schema_with = super::schema::kind_bar)]
    pub kind: String,
    #[schema(schema_with = super::schema::identifier)]
    pub instrument: String,
    pub start_ms: i64,
    pub end_ms: i64,
    #[serde(with = "json_decimal")]
    #[schema(schema_with = super::schema::decimal)]
    pub open: Decimal,
    #[serde(with = "json_decimal")]
    #[schema(schema_with = super::schema::decimal)]
    pub high: Decimal,
    #[serde(with = "json_decimal")]
    #[schema(schema_with = super::schema::decimal)]
    pub low: Decimal,
    #[serde(with = "json_decimal")]
    #[schema(schema_with = super::schema::decimal)]
    pub close: Decimal,
    #[serde(with = "json_decimal")]
    #[schema(schema_with = super::schema::decimal)]
    pub volume: Decimal,
    /// Volume-weighted average price (rounded to 6 decimal places).
    #[serde(with = "json_decimal")]
    #[schema(schema_with = super::schema::decimal)]
    pub vwap: Decimal,
    pub trades: i64,
}

/// One simple moving average; `value` is null until `n` bars exist.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SmaValue {
    pub n: usize,
    #[serde(with = "json_decimal::option")]
    #[schema(schema_with = super::schema::decimal_or_null)]
    pub value: Option<Decimal>,
}

/// `kind: "sma"` — moving averages of the bar closes of one instrument, at a bar's close.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SmaMessage {
    #[schema(schema_with = super::schema::kind_sma)]
    pub kind: String,
    #[schema(schema_with = super::schema::identifier)]
    pub instrument: String,
    pub end_ms: i64,
    #[serde(with = "json_decimal")]
    #[schema(schema_with = super::schema::decimal)]
    pub close: Decimal,
    pub sma: Vec<SmaValue>,
}

/// `kind: "pnl"` — one trader's position and P&L in one instrument at a window close (sent for
/// every trader/instrument that traded in the window). Money rounded to 6 decimal places.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PnlMessage {
    #[schema(schema_with = super::schema::kind_pnl)]
    pub kind: String,
    #[schema(schema_with = super::schema::identifier)]
    pub trader: String,
    #[schema(schema_with = super::schema::identifier)]
    pub instrument: String,
    pub end_ms: i64,
    /// Signed: positive long, negative short.
    #[serde(with = "json_decimal")]
    #[schema(schema_with = super::schema::decimal)]
    pub position: Decimal,
    #[serde(with = "json_decimal")]
    #[schema(schema_with = super::schema::decimal)]
    pub avg_price: Decimal,
    #[serde(with = "json_decimal")]
    #[schema(schema_with = super::schema::decimal)]
    pub realized: Decimal,
    /// Marked to the last trade price.
    #[serde(with = "json_decimal")]
    #[schema(schema_with = super::schema::decimal)]
    pub unrealized: Decimal,
    /// `realized + unrealized`.
    #[serde(with = "json_decimal")]
    #[schema(schema_with = super::schema::decimal)]
    pub total: Decimal,
    #[serde(with = "json_decimal")]
    #[schema(schema_with = super::schema::decimal)]
    pub mark: Decimal,
    /// Marked to the latest SMA (the shortest configured), when one exists.
    #[serde(default, with = "json_decimal::option")]
    #[schema(schema_with = super::schema::decimal_or_null)]
    pub mark_sma: Option<Decimal>,
    #[serde(default, with = "json_decimal::option")]
    #[schema(schema_with = super::schema::decimal_or_null)]
    pub unrealized_sma: Option<Decimal>,
    /// All-time traded quantity and notional.
    #[serde(with = "json_decimal")]
    #[schema(schema_with = super::schema::decimal)]
    pub volume: Decimal,
    #[serde(with = "json_decimal")]
    #[schema(schema_with = super::schema::decimal)]
    pub notional: Decimal,
    /// This window's bought and sold quantity.
    #[serde(with = "json_decimal")]
    #[schema(schema_with = super::schema::decimal)]
    pub window_bought: Decimal,
    #[serde(with = "json_decimal")]
    #[schema(schema_with = super::schema::decimal)]
    pub window_sold: Decimal,
}

/// One leaderboard line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LeaderEntry {
    pub rank: usize,
    #[schema(schema_with = super::schema::identifier)]
    pub trader: String,
    #[serde(with = "json_decimal")]
    #[schema(schema_with = super::schema::decimal)]
    pub total: Decimal,
}

/// The leaderboard (`GET /leaderboard`, the demo's summary): traders ranked by total P&L over all
/// instruments, combined from every partition's latest [`TotalsMessage`]
/// ([`crate::analytics::leaderboard`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LeaderboardMessage {
    #[schema(schema_with = super::schema::kind_leaderboard)]
    pub kind: String,
    /// The newest window end among the totals it combines.
    pub end_ms: i64,
    pub top: Vec<LeaderEntry>,
}

/// One trader's total P&L in one partition's instruments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TraderTotal {
    #[schema(schema_with = super::schema::identifier)]
    pub trader: String,
    #[serde(with = "json_decimal")]
    #[schema(schema_with = super::schema::decimal)]
    pub total: Decimal,
}

/// `kind: "totals"` (key `totals`) — at a window close of a `trades` partition, the total P&L
/// (realized + unrealized, all the partition's instruments) of every trader that has traded
/// there, by trader name. A deterministic output of that partition alone; the leaderboard is their
/// combination.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TotalsMessage {
    #[schema(schema_with = super::schema::kind_totals)]
    pub kind: String,
    pub end_ms: i64,
    /// The `trades` partition.
    pub partition: i32,
    pub traders: Vec<TraderTotal>,
}

/// One `analytics` message, whatever its kind.
#[derive(Clone, Debug, PartialEq)]
pub enum AnalyticsMessage {
    Bar(BarMessage),
    Sma(SmaMessage),
    Pnl(PnlMessage),
    Totals(TotalsMessage),
}

/// The one decoder of `analytics` (market-view, the demo, reports): the `kind`, then the
/// matching message; the error says why a payload is not one.
pub fn decode_analytics(payload: &[u8]) -> Result<AnalyticsMessage, String> {
    fn json<T: serde::de::DeserializeOwned>(p: &[u8]) -> Result<T, String> {
        serde_json::from_slice(p).map_err(|e| e.to_string())
    }
    let kind = json::<AnalyticsKind>(payload).map_err(|e| format!("no analytics kind: {e}"))?;
    match kind.kind.as_str() {
        "bar" => json(payload).map(AnalyticsMessage::Bar),
        "sma" => json(payload).map(AnalyticsMessage::Sma),
        "pnl" => json(payload).map(AnalyticsMessage::Pnl),
        "totals" => json(payload).map(AnalyticsMessage::Totals),
        other => Err(format!("unknown analytics kind {other:?}")),
    }
}
