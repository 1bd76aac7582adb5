//! Message schemas (JSON, serde) for every topic, and parsing of incoming orders.
//!
//! Prices and quantities travel as JSON numbers whose text is the exact decimal (`15.05`, never
//! `15.050000000000001`): they are written from `rust_decimal` and read back from the raw number
//! text, never through `f64`. Reading also accepts them as strings (`"15.05"`).
//!
//! ## `orders`
//! The seed format is accepted unchanged (defaults: limit, GTC, trader `default`):
//! ```json
//! {"id":1000001,"instrument":"TCS","trxn_type":"BUY","quantity":5.0,"price":15.0,"order_timestamp":"2023/03/12, 23:48:37"}
//! ```
//! Extended fields: `trader`, `order_type` (`LIMIT`|`MARKET`), `time_in_force` (`GTC`|`IOC`|`FOK`),
//! `post_only` (bool), and `action` (`NEW`, the default, `CANCEL` or `AMEND`):
//! ```json
//! {"action":"CANCEL","id":1000001,"instrument":"TCS","trader":"T0001"}
//! {"action":"AMEND","id":1000001,"instrument":"TCS","trader":"T0001","price":15.05,"quantity":3}
//! ```
//! For `AMEND`, `quantity` is the new open quantity. Unknown fields are rejected (a misspelt
//! `prise` must not silently become a price-less order).

use chrono::{DateTime, NaiveDateTime};
use kappa_engine::{
    AmendOrder, CancelOrder, Command, DepthSide, FixedStr, InstrumentId, Instruments, NewOrder,
    OrderStatus, OrderType, OrderUpdate, Side, TimeInForce, Trade, TraderId,
};
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::str::FromStr;

/// Trader used when an order does not name one (the seed format has no trader).
pub const DEFAULT_TRADER: &str = "default";

/// Timestamp format of the seed orders: `2023/03/12, 23:48:37` (fractional seconds allowed).
pub const ORDER_TIMESTAMP_FORMAT: &str = "%Y/%m/%d, %H:%M:%S%.f";

/// Why an input message could not become a command. `reason` is a stable code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputError {
    pub reason: &'static str,
    pub detail: String,
}

impl InputError {
    fn new(reason: &'static str, detail: impl Into<String>) -> Self {
        InputError {
            reason,
            detail: detail.into(),
        }
    }
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.reason, self.detail)
    }
}

/// A parsed order message: the command, and its event time if the message carried one.
#[derive(Clone, Debug, PartialEq)]
pub struct ParsedOrder {
    pub command: Command,
    /// Milliseconds since the Unix epoch (UTC), from `order_timestamp`.
    pub event_time_ms: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrder<'a> {
    #[serde(default, borrow)]
    action: Option<Cow<'a, str>>,
    id: u64,
    #[serde(borrow)]
    instrument: Cow<'a, str>,
    #[serde(default, borrow)]
    trxn_type: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    quantity: Option<&'a RawValue>,
    #[serde(default, borrow)]
    price: Option<&'a RawValue>,
    #[serde(default, borrow)]
    order_timestamp: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    trader: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    order_type: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    time_in_force: Option<Cow<'a, str>>,
    #[serde(default)]
    post_only: Option<bool>,
}

/// Parses the exact decimal text of a JSON number (or numeric string).
pub fn decimal_from_json(raw: &str) -> Option<Decimal> {
    let text = raw.trim();
    let text = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    if text.is_empty() || text == "null" {
        return None;
    }
    Decimal::from_str(text)
        .or_else(|_| Decimal::from_scientific(text))
        .ok()
}

fn decimal_field(
    raw: Option<&RawValue>,
    name: &'static str,
    reason: &'static str,
) -> Result<Option<Decimal>, InputError> {
    match raw {
        None => Ok(None),
        Some(r) => decimal_from_json(r.get()).map(Some).ok_or_else(|| {
            InputError::new(
                reason,
                format!("{name} is not a decimal number: {}", r.get()),
            )
        }),
    }
}

/// Parses an order timestamp (`2023/03/12, 23:48:37[.123]` as UTC, or RFC 3339).
pub fn parse_timestamp(text: &str) -> Option<i64> {
    if let Some(ms) = parse_seed_timestamp(text.as_bytes()) {
        return Some(ms);
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(text, ORDER_TIMESTAMP_FORMAT) {
        return Some(t.and_utc().timestamp_millis());
    }
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// Fast path for exactly `YYYY/MM/DD, HH:MM:SS` with optional `.f` to `.fff` (the generator's
/// and the seed's format); anything else falls back to chrono.
fn parse_seed_timestamp(b: &[u8]) -> Option<i64> {
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        b.get(r)?.iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + (c - b'0') as u32)
        })
    };
    if b.len() < 20
        || b[4] != b'/'
        || b[7] != b'/'
        || &b[10..12] != b", "
        || b[14] != b':'
        || b[17] != b':'
    {
        return None;
    }
    let millis = match &b[20..] {
        [] => 0,
        [b'.', frac @ ..] if (1..=3).contains(&frac.len()) => {
            digits(21..b.len())? * 10u32.pow(3 - frac.len() as u32)
        }
        _ => return None,
    };
    let date =
        chrono::NaiveDate::from_ymd_opt(digits(0..4)? as i32, digits(5..7)?, digits(8..10)?)?;
    let time = chrono::NaiveTime::from_hms_milli_opt(
        digits(12..14)?,
        digits(15..17)?,
        digits(18..20)?,
        millis,
    )?;
    Some(date.and_time(time).and_utc().timestamp_millis())
}

/// Formats milliseconds since the epoch in the seed timestamp format (with milliseconds).
pub fn format_timestamp(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y/%m/%d, %H:%M:%S%.3f").to_string())
        .unwrap_or_default()
}

fn fixed(text: &str, reason: &'static str, what: &str) -> Result<FixedStr, InputError> {
    FixedStr::new(text).map_err(|e| InputError::new(reason, format!("{what} {text:?}: {e}")))
}

#[derive(Clone, Copy)]
enum Action {
    New,
    Cancel,
    Amend,
}

/// Matches an enumerated field case-insensitively (no allocation). `default` applies when the
/// field is absent; without one, the field is required.
fn keyword<T: Copy>(
    value: Option<&str>,
    default: Option<T>,
    choices: &[(&str, T)],
    reason: &'static str,
    field: &str,
) -> Result<T, InputError> {
    let Some(v) = value else {
        return default.ok_or_else(|| {
            InputError::new(
                "missing_field",
                format!("{field} is required for a new order"),
            )
        });
    };
    choices
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(v))
        .map(|(_, t)| *t)
        .ok_or_else(|| {
            let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
            InputError::new(
                reason,
                format!("{field} {v:?} is not one of {}", names.join(", ")),
            )
        })
}

/// Parses one `orders` message. Only shape and types are checked here; the engine validates
/// instrument, tick, lot and limits and rejects with its own reasons.
pub fn parse_order(bytes: &[u8]) -> Result<ParsedOrder, InputError> {
    let raw: RawOrder = serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Syntax | Category::Eof | Category::Io => {
                InputError::new("malformed_json", e.to_string())
            }
            Category::Data => InputError::new("invalid_field", e.to_string()),
        }
    })?;
    let trader = fixed(
        raw.trader.as_deref().unwrap_or(DEFAULT_TRADER),
        "invalid_trader",
        "trader",
    )?;
    // Symbols longer than any configured one cannot be known: report them as unknown.
    let instrument = fixed(&raw.instrument, "unknown_instrument", "instrument")?;
    let event_time_ms = match raw.order_timestamp.as_deref() {
        None => None,
        Some(t) => Some(parse_timestamp(t).ok_or_else(|| {
            InputError::new(
                "invalid_timestamp",
                format!("order_timestamp {t:?} is not \"YYYY/MM/DD, HH:MM:SS\" or RFC 3339"),
            )
        })?),
    };
    let price = decimal_field(raw.price, "price", "invalid_price")?;
    let quantity = decimal_field(raw.quantity, "quantity", "invalid_quantity")?;
    let action = keyword(
        raw.action.as_deref(),
        Some(Action::New),
        &[
            ("NEW", Action::New),
            ("CANCEL", Action::Cancel),
            ("AMEND", Action::Amend),
        ],
        "invalid_action",
        "action",
    )?;
    let command = match action {
        Action::New => {
            let side = keyword(
                raw.trxn_type.as_deref(),
                None,
                &[("BUY", Side::Buy), ("SELL", Side::Sell)],
                "invalid_side",
                "trxn_type",
            )?;
            let order_type = keyword(
                raw.order_type.as_deref(),
                Some(OrderType::Limit),
                &[("LIMIT", OrderType::Limit), ("MARKET", OrderType::Market)],
                "invalid_order_type",
                "order_type",
            )?;
            let time_in_force = keyword(
                raw.time_in_force.as_deref(),
                Some(TimeInForce::Gtc),
                &[
                    ("GTC", TimeInForce::Gtc),
                    ("IOC", TimeInForce::Ioc),
                    ("FOK", TimeInForce::Fok),
                ],
                "invalid_time_in_force",
                "time_in_force",
            )?;
            let quantity = quantity.ok_or_else(|| {
                InputError::new("missing_field", "quantity is required for a new order")
            })?;
            Command::New(NewOrder {
                order_id: raw.id,
                trader,
                instrument,
                side,
                order_type,
                time_in_force,
                post_only: raw.post_only.unwrap_or(false),
                price,
                quantity,
            })
        }
        Action::Cancel => Command::Cancel(CancelOrder {
            order_id: raw.id,
            trader,
            instrument,
        }),
        Action::Amend => Command::Amend(AmendOrder {
            order_id: raw.id,
            trader,
            instrument,
            price,
            quantity,
        }),
    };
    Ok(ParsedOrder {
        command,
        event_time_ms,
    })
}

/// Serde helpers writing a `Decimal` as a JSON number with its exact text, and reading it back
/// from a number or a string.
pub mod json_decimal {
    use super::*;

    /// serde_json's marker for "write this text verbatim as a JSON value" (what `RawValue`
    /// serializes through); lets a decimal be written from a stack buffer without allocating.
    const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

    struct StackBuf {
        buf: [u8; 64],
        len: usize,
    }

    impl std::fmt::Write for StackBuf {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            let end = self.len + s.len();
            self.buf
                .get_mut(self.len..end)
                .ok_or(std::fmt::Error)?
                .copy_from_slice(s.as_bytes());
            self.len = end;
            Ok(())
        }
    }

    pub fn serialize<S: Serializer>(d: &Decimal, s: S) -> Result<S::Ok, S::Error> {
        use std::fmt::Write;
        let mut b = StackBuf {
            buf: [0; 64],
            len: 0,
        };
        write!(b, "{d}").map_err(serde::ser::Error::custom)?;
        let text = std::str::from_utf8(&b.buf[..b.len]).map_err(serde::ser::Error::custom)?;
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct(RAW_VALUE_TOKEN, 1)?;
        st.serialize_field(RAW_VALUE_TOKEN, text)?;
        st.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
        let raw: Box<RawValue> = Deserialize::deserialize(d)?;
        decimal_from_json(raw.get())
            .ok_or_else(|| serde::de::Error::custom(format!("not a decimal: {}", raw.get())))
    }

    /// The same for `Option<Decimal>` (absent or `null` = `None`).
    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(d: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => super::serialize(d, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
            let raw: Option<Box<RawValue>> = Deserialize::deserialize(d)?;
            match raw {
                None => Ok(None),
                Some(raw) => decimal_from_json(raw.get()).map(Some).ok_or_else(|| {
                    serde::de::Error::custom(format!("not a decimal: {}", raw.get()))
                }),
            }
        }
    }
}

/// An order as written to `orders` by the generator and the API (the extended seed format).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderMessage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    pub id: u64,
    pub instrument: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trxn_type: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "json_decimal::option"
    )]
    pub quantity: Option<Decimal>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "json_decimal::option"
    )]
    pub price: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trader: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_in_force: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_only: Option<bool>,
}

impl OrderMessage {
    /// The message for `command` (decimal edge form), stamped with `event_time_ms`.
    pub fn from_command(command: &Command, event_time_ms: i64) -> Self {
        let ts = Some(format_timestamp(event_time_ms));
        match command {
            Command::New(n) => OrderMessage {
                action: None,
                id: n.order_id,
                instrument: n.instrument.to_string(),
                trxn_type: Some(n.side.as_str().to_string()),
                quantity: Some(n.quantity),
                price: n.price,
                order_timestamp: ts,
                trader: Some(n.trader.to_string()),
                order_type: Some(order_type_name(n.order_type).into()),
                time_in_force: Some(tif_name(n.time_in_force).into()),
                post_only: n.post_only.then_some(true),
            },
            Command::Cancel(c) => OrderMessage {
                action: Some("CANCEL".into()),
                id: c.order_id,
                instrument: c.instrument.to_string(),
                trxn_type: None,
                quantity: None,
                price: None,
                order_timestamp: ts,
                trader: Some(c.trader.to_string()),
                order_type: None,
                time_in_force: None,
                post_only: None,
            },
            Command::Amend(a) => OrderMessage {
                action: Some("AMEND".into()),
                id: a.order_id,
                instrument: a.instrument.to_string(),
                trxn_type: None,
                quantity: a.quantity,
                price: a.price,
                order_timestamp: ts,
                trader: Some(a.trader.to_string()),
                order_type: None,
                time_in_force: None,
                post_only: None,
            },
        }
    }
}

fn order_type_name(t: OrderType) -> &'static str {
    match t {
        OrderType::Limit => "LIMIT",
        OrderType::Market => "MARKET",
    }
}

fn tif_name(t: TimeInForce) -> &'static str {
    match t {
        TimeInForce::Gtc => "GTC",
        TimeInForce::Ioc => "IOC",
        TimeInForce::Fok => "FOK",
    }
}

/// Globally unique trade id: the match-maker partition in the high digits, the engine's trade
/// number below (`3_000_000_000_123` = trade 123 of partition 3).
pub fn global_trade_id(partition: i32, trade_id: u64) -> u64 {
    partition as u64 * 1_000_000_000_000 + trade_id
}

/// One execution, on `trades`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TradeMessage {
    pub trade_id: u64,
    pub instrument: String,
    #[serde(with = "json_decimal")]
    pub price: Decimal,
    #[serde(with = "json_decimal")]
    pub quantity: Decimal,
    pub buyer: String,
    pub seller: String,
    pub buy_order_id: u64,
    pub sell_order_id: u64,
    /// `BUY` or `SELL`: the side of the incoming (taker) order.
    pub aggressor: String,
    /// Event time of the order that caused the trade (ms since epoch).
    pub ts_ms: i64,
}

impl TradeMessage {
    pub fn new(t: &Trade, instruments: &Instruments, partition: i32, ts_ms: i64) -> Self {
        let (buy_order_id, buyer) = t.buyer();
        let (sell_order_id, seller) = t.seller();
        TradeMessage {
            trade_id: global_trade_id(partition, t.trade_id),
            instrument: instruments.symbol(t.instrument).to_string(),
            price: instruments.ticks_to_price(t.instrument, t.price),
            quantity: instruments.lots_to_qty(t.instrument, t.quantity),
            buyer: buyer.to_string(),
            seller: seller.to_string(),
            buy_order_id,
            sell_order_id,
            aggressor: t.aggressor.as_str().to_string(),
            ts_ms,
        }
    }
}

/// A change in one order's life, on `order-events` (key = trader).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderEventMessage {
    pub order_id: u64,
    pub trader: String,
    pub instrument: String,
    /// `ACCEPTED`, `REJECTED`, `NEW`, `PARTIALLY_FILLED`, `FILLED`, `AMENDED`, `CANCELLED`.
    pub status: String,
    /// Cancel or reject reason code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub side: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "json_decimal::option"
    )]
    pub price: Option<Decimal>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "json_decimal::option"
    )]
    pub quantity: Option<Decimal>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "json_decimal::option"
    )]
    pub filled: Option<Decimal>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "json_decimal::option"
    )]
    pub leaves: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_in_force: Option<String>,
    pub ts_ms: i64,
}

fn status_name(s: OrderStatus) -> &'static str {
    match s {
        OrderStatus::New => "NEW",
        OrderStatus::PartiallyFilled => "PARTIALLY_FILLED",
        OrderStatus::Filled => "FILLED",
        OrderStatus::Amended => "AMENDED",
        OrderStatus::Cancelled(_) => "CANCELLED",
    }
}

impl OrderEventMessage {
    pub fn from_update(u: &OrderUpdate, instruments: &Instruments, ts_ms: i64) -> Self {
        let q = |lots| Some(instruments.lots_to_qty(u.instrument, lots));
        OrderEventMessage {
            order_id: u.order_id,
            trader: u.trader.to_string(),
            instrument: instruments.symbol(u.instrument).to_string(),
            status: status_name(u.status).into(),
            reason: match u.status {
                OrderStatus::Cancelled(r) => Some(r.code().into()),
                _ => None,
            },
            side: Some(u.side.as_str().into()),
            price: u.price.map(|p| instruments.ticks_to_price(u.instrument, p)),
            quantity: q(u.quantity),
            filled: q(u.filled),
            leaves: q(u.leaves),
            order_type: None,
            time_in_force: None,
            ts_ms,
        }
    }

    /// Adds the order's terms (type, time in force) from its acceptance: the first status event
    /// of every order carries them.
    pub fn with_terms(&mut self, a: &kappa_engine::Accepted) {
        self.order_type = Some(order_type_name(a.order_type).into());
        self.time_in_force = Some(tif_name(a.time_in_force).into());
    }

    pub fn accepted(a: &kappa_engine::Accepted, instruments: &Instruments, ts_ms: i64) -> Self {
        OrderEventMessage {
            order_id: a.order_id,
            trader: a.trader.to_string(),
            instrument: instruments.symbol(a.instrument).to_string(),
            status: "ACCEPTED".into(),
            reason: None,
            side: Some(a.side.as_str().into()),
            price: a.price.map(|p| instruments.ticks_to_price(a.instrument, p)),
            quantity: Some(instruments.lots_to_qty(a.instrument, a.quantity)),
            filled: None,
            leaves: None,
            order_type: Some(order_type_name(a.order_type).into()),
            time_in_force: Some(tif_name(a.time_in_force).into()),
            ts_ms,
        }
    }

    pub fn rejected(
        order_id: u64,
        trader: TraderId,
        instrument: &str,
        reason: &str,
        ts_ms: i64,
    ) -> Self {
        OrderEventMessage {
            order_id,
            trader: trader.to_string(),
            instrument: instrument.to_string(),
            status: "REJECTED".into(),
            reason: Some(reason.to_string()),
            side: None,
            price: None,
            quantity: None,
            filled: None,
            leaves: None,
            order_type: None,
            time_in_force: None,
            ts_ms,
        }
    }
}

/// One aggregated price level on `book`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LevelMessage {
    #[serde(with = "json_decimal")]
    pub price: Decimal,
    #[serde(with = "json_decimal")]
    pub quantity: Decimal,
    pub orders: u32,
}

/// Top-N depth of one instrument, on `book` (conflated: the latest state wins; compare
/// `(partition, as_of_offset)` to discard stale copies).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BookMessage {
    pub instrument: String,
    pub bids: Vec<LevelMessage>,
    pub asks: Vec<LevelMessage>,
    /// `orders` partition and offset of the last order reflected.
    pub partition: i32,
    pub as_of_offset: i64,
    pub ts_ms: i64,
}

impl BookMessage {
    pub fn new(
        instrument: InstrumentId,
        bids: &DepthSide,
        asks: &DepthSide,
        instruments: &Instruments,
        partition: i32,
        offset: i64,
        ts_ms: i64,
    ) -> Self {
        let levels = |side: &DepthSide| {
            side.levels()
                .iter()
                .map(|l| LevelMessage {
                    price: instruments.ticks_to_price(instrument, l.price),
                    quantity: instruments.lots_to_qty(instrument, l.quantity),
                    orders: l.orders,
                })
                .collect()
        };
        BookMessage {
            instrument: instruments.symbol(instrument).to_string(),
            bids: levels(bids),
            asks: levels(asks),
            partition,
            as_of_offset: offset,
            ts_ms,
        }
    }
}

/// Where a rejected input came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRef {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// Most bytes of an input's payload a reject carries; the payload's full length and SHA-256
/// identify the rest. Whatever arrives, a reject stays far below any broker's message limit.
pub const REJECT_PAYLOAD_MAX: usize = 4096;
/// Most bytes of a reject's detail (parser messages can quote the input).
pub const REJECT_DETAIL_MAX: usize = 1024;

/// A rejected input, on `rejects`: the reason, and the original payload (its first
/// [`REJECT_PAYLOAD_MAX`] bytes, with its length and hash) for inspection or replay.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RejectMessage {
    /// Stable reason code (`malformed_json`, `price_off_tick`, `duplicate_order_id`, …).
    pub reason: String,
    pub detail: String,
    /// The input as received (lossy UTF-8 if it was not valid UTF-8), cut to
    /// [`REJECT_PAYLOAD_MAX`] bytes at a character boundary.
    pub payload: String,
    /// The input's length in bytes, and whether `payload` is only its beginning.
    #[serde(default)]
    pub payload_bytes: u64,
    #[serde(default)]
    pub payload_truncated: bool,
    /// SHA-256 of the input's bytes, hex.
    #[serde(default)]
    pub payload_sha256: String,
    pub source: SourceRef,
    /// Job that rejected it.
    pub job: String,
}

impl RejectMessage {
    /// A reject of input `payload`, bounded: payload and detail cut to their limits.
    pub fn new(reason: &str, detail: &str, payload: &[u8], source: SourceRef, job: &str) -> Self {
        use sha2::Digest as _;
        let head = &payload[..payload.len().min(REJECT_PAYLOAD_MAX)];
        let text = String::from_utf8_lossy(head);
        let kept = cut_at_char(&text, REJECT_PAYLOAD_MAX);
        RejectMessage {
            reason: reason.to_string(),
            detail: cut_at_char(detail, REJECT_DETAIL_MAX).to_string(),
            payload_truncated: head.len() < payload.len() || kept.len() < text.len(),
            payload: kept.to_string(),
            payload_bytes: payload.len() as u64,
            payload_sha256: sha2::Sha256::digest(payload)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            source,
            job: job.to_string(),
        }
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn cut_at_char(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The `kind` of an `analytics` message (read this first, then the matching struct).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct AnalyticsKind {
    pub kind: String,
}

/// `kind: "bar"` — OHLCV of one instrument over one event-time window `[start_ms, end_ms)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BarMessage {
    pub kind: String,
    pub instrument: String,
    pub start_ms: i64,
    pub end_ms: i64,
    #[serde(with = "json_decimal")]
    pub open: Decimal,
    #[serde(with = "json_decimal")]
    pub high: Decimal,
    #[serde(with = "json_decimal")]
    pub low: Decimal,
    #[serde(with = "json_decimal")]
    pub close: Decimal,
    #[serde(with = "json_decimal")]
    pub volume: Decimal,
    /// Volume-weighted average price (rounded to 6 decimal places).
    #[serde(with = "json_decimal")]
    pub vwap: Decimal,
    pub trades: i64,
}

/// One simple moving average; `value` is null until `n` bars exist.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SmaValue {
    pub n: usize,
    #[serde(with = "json_decimal::option")]
    pub value: Option<Decimal>,
}

/// `kind: "sma"` — moving averages of the bar closes of one instrument, at a bar's close.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SmaMessage {
    pub kind: String,
    pub instrument: String,
    pub end_ms: i64,
    #[serde(with = "json_decimal")]
    pub close: Decimal,
    pub sma: Vec<SmaValue>,
}

/// `kind: "pnl"` — one trader's position and P&L in one instrument at a window close (sent for
/// every trader/instrument that traded in the window). Money rounded to 6 decimal places.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PnlMessage {
    pub kind: String,
    pub trader: String,
    pub instrument: String,
    pub end_ms: i64,
    /// Signed: positive long, negative short.
    #[serde(with = "json_decimal")]
    pub position: Decimal,
    #[serde(with = "json_decimal")]
    pub avg_price: Decimal,
    #[serde(with = "json_decimal")]
    pub realized: Decimal,
    /// Marked to the last trade price.
    #[serde(with = "json_decimal")]
    pub unrealized: Decimal,
    /// `realized + unrealized`.
    #[serde(with = "json_decimal")]
    pub total: Decimal,
    #[serde(with = "json_decimal")]
    pub mark: Decimal,
    /// Marked to the latest SMA (the shortest configured), when one exists.
    #[serde(default, with = "json_decimal::option")]
    pub mark_sma: Option<Decimal>,
    #[serde(default, with = "json_decimal::option")]
    pub unrealized_sma: Option<Decimal>,
    /// All-time traded quantity and notional.
    #[serde(with = "json_decimal")]
    pub volume: Decimal,
    #[serde(with = "json_decimal")]
    pub notional: Decimal,
    /// This window's bought and sold quantity.
    #[serde(with = "json_decimal")]
    pub window_bought: Decimal,
    #[serde(with = "json_decimal")]
    pub window_sold: Decimal,
}

/// One leaderboard line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeaderEntry {
    pub rank: usize,
    pub trader: String,
    #[serde(with = "json_decimal")]
    pub total: Decimal,
}

/// The leaderboard (`GET /leaderboard`, the demo's summary): traders ranked by total P&L over all
/// instruments, combined from every partition's latest [`TotalsMessage`]
/// ([`crate::analytics::leaderboard`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeaderboardMessage {
    pub kind: String,
    /// The newest window end among the totals it combines.
    pub end_ms: i64,
    pub top: Vec<LeaderEntry>,
}

/// One trader's total P&L in one partition's instruments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraderTotal {
    pub trader: String,
    #[serde(with = "json_decimal")]
    pub total: Decimal,
}

/// `kind: "totals"` (key `totals`) — at a window close of a `trades` partition, the total P&L
/// (realized + unrealized, all the partition's instruments) of every trader that has traded
/// there, by trader name. A deterministic output of that partition alone; the leaderboard is their
/// combination.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TotalsMessage {
    pub kind: String,
    pub end_ms: i64,
    /// The `trades` partition.
    pub partition: i32,
    pub traders: Vec<TraderTotal>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_are_bounded_whatever_the_input() {
        let source = || SourceRef {
            topic: "orders".into(),
            partition: 0,
            offset: 7,
        };
        // A 350 KB message of 0xFF bytes: each becomes U+FFFD (3 bytes) in lossy UTF-8.
        let hostile = vec![0xFFu8; 350_000];
        let r = RejectMessage::new(
            "malformed_json",
            &"x".repeat(10_000),
            &hostile,
            source(),
            "mm",
        );
        assert!(r.payload.len() <= REJECT_PAYLOAD_MAX && r.payload.starts_with('\u{FFFD}'));
        assert!(r.payload_truncated && r.payload_bytes == 350_000);
        assert_eq!(r.detail.len(), REJECT_DETAIL_MAX);
        assert!(serde_json::to_vec(&r).unwrap().len() < 8 * 1024);
        // SHA-256 of the whole input (sha256sum of 350 000 0xFF bytes).
        assert_eq!(
            r.payload_sha256,
            "59f8315fd1c7fede17f83d8f0eadd582143b2edfad4352b5b0411d7e195a3e00"
        );
        let small = RejectMessage::new("malformed_json", "d", b"{not json", source(), "mm");
        assert_eq!(small.payload, "{not json");
        assert!(!small.payload_truncated && small.payload_bytes == 9);
        assert_eq!(
            small.payload_sha256,
            "92072df399cb74703f8e86f450d552bc0bb01eeeb98a90985a1b7772c8fd0016"
        );
        // A multi-byte character straddling the limit is left out whole.
        let mut text = "a".repeat(REJECT_PAYLOAD_MAX - 1).into_bytes();
        text.extend("é".as_bytes());
        let r = RejectMessage::new("x", "d", &text, source(), "mm");
        assert_eq!(r.payload.len(), REJECT_PAYLOAD_MAX - 1);
        assert!(r.payload_truncated);
    }

    const SEED: &str = r#"{"id":1000001,"instrument":"TCS","trxn_type":"BUY","quantity":5.0,"price":15.0,"order_timestamp":"2023/03/12, 23:48:37"}"#;

    #[test]
    fn seed_format_is_accepted_as_is() {
        let p = parse_order(SEED.as_bytes()).unwrap();
        let Command::New(n) = p.command else {
            panic!("expected a new order")
        };
        assert_eq!(n.order_id, 1_000_001);
        assert_eq!(n.instrument.as_str(), "TCS");
        assert_eq!(n.side, Side::Buy);
        assert_eq!(n.quantity, Decimal::new(50, 1));
        assert_eq!(n.price, Some(Decimal::new(150, 1)));
        assert_eq!(
            (n.order_type, n.time_in_force, n.post_only),
            (OrderType::Limit, TimeInForce::Gtc, false)
        );
        assert_eq!(n.trader.as_str(), DEFAULT_TRADER);
        assert_eq!(p.event_time_ms, Some(1_678_664_917_000));
    }

    #[test]
    fn decimals_are_exact_never_floats() {
        let msg = r#"{"id":1,"instrument":"TCS","trxn_type":"SELL","quantity":"3","price":0.1000000000000000055511151231257827}"#;
        let Command::New(n) = parse_order(msg.as_bytes()).unwrap().command else {
            panic!()
        };
        assert_eq!(
            n.price.unwrap().to_string(),
            "0.1000000000000000055511151231"
        );
        assert_eq!(n.quantity, Decimal::from(3));
        let m = TradeMessage {
            trade_id: 1,
            instrument: "TCS".into(),
            price: Decimal::new(1505, 2),
            quantity: Decimal::new(30, 1),
            buyer: "a".into(),
            seller: "b".into(),
            buy_order_id: 1,
            sell_order_id: 2,
            aggressor: "BUY".into(),
            ts_ms: 0,
        };
        let json = serde_json::to_string(&m).unwrap();
        assert!(json.contains(r#""price":15.05,"quantity":3.0"#), "{json}");
        assert_eq!(serde_json::from_str::<TradeMessage>(&json).unwrap(), m);
    }

    #[test]
    fn extended_cancel_and_amend_forms() {
        let p = parse_order(br#"{"id":7,"instrument":"TCS","trxn_type":"sell","quantity":1,"order_type":"MARKET","time_in_force":"FOK","trader":"T9"}"#).unwrap();
        let Command::New(n) = p.command else { panic!() };
        assert_eq!(
            (n.side, n.order_type, n.time_in_force, n.price),
            (Side::Sell, OrderType::Market, TimeInForce::Fok, None)
        );
        assert_eq!(p.event_time_ms, None);
        let c =
            parse_order(br#"{"action":"CANCEL","id":7,"instrument":"TCS","trader":"T9"}"#).unwrap();
        assert!(
            matches!(c.command, Command::Cancel(c) if c.order_id == 7 && c.trader.as_str() == "T9")
        );
        let a = parse_order(
            br#"{"action":"amend","id":7,"instrument":"TCS","trader":"T9","price":"15.05"}"#,
        )
        .unwrap();
        assert!(
            matches!(a.command, Command::Amend(a) if a.price == Some(Decimal::new(1505, 2)) && a.quantity.is_none())
        );
    }

    #[test]
    fn bad_input_gets_a_specific_reason() {
        let cases: &[(&[u8], &str)] = &[
            (b"{not json", "malformed_json"),
            (b"", "malformed_json"),
            (b"\xff\xfe", "malformed_json"),
            (br#"{"id":"x","instrument":"TCS"}"#, "invalid_field"),
            (br#"{"id":-1,"instrument":"TCS","trxn_type":"BUY","quantity":1}"#, "invalid_field"),
            (br#"{"instrument":"TCS","trxn_type":"BUY","quantity":1}"#, "invalid_field"),
            (br#"{"id":1,"instrument":"TCS","trxn_type":"BUY","quantity":1,"prise":3}"#, "invalid_field"),
            (br#"{"id":1,"instrument":"TCS","trxn_type":"HOLD","quantity":1}"#, "invalid_side"),
            (br#"{"id":1,"instrument":"TCS","quantity":1}"#, "missing_field"),
            (br#"{"id":1,"instrument":"TCS","trxn_type":"BUY"}"#, "missing_field"),
            (br#"{"id":1,"instrument":"TCS","trxn_type":"BUY","quantity":"lots"}"#, "invalid_quantity"),
            (br#"{"id":1,"instrument":"TCS","trxn_type":"BUY","quantity":1,"price":true}"#, "invalid_price"),
            (br#"{"id":1,"instrument":"TCS","trxn_type":"BUY","quantity":1,"order_type":"STOP"}"#, "invalid_order_type"),
            (br#"{"id":1,"instrument":"TCS","trxn_type":"BUY","quantity":1,"time_in_force":"DAY"}"#, "invalid_time_in_force"),
            (br#"{"id":1,"instrument":"TCS","trxn_type":"BUY","quantity":1,"order_timestamp":"yesterday"}"#, "invalid_timestamp"),
            (br#"{"id":1,"instrument":"A_VERY_LONG_SYMBOL_NAME","trxn_type":"BUY","quantity":1}"#, "unknown_instrument"),
            (br#"{"id":1,"instrument":"TCS","trader":"has space","trxn_type":"BUY","quantity":1}"#, "invalid_trader"),
            (br#"{"action":"DELETE","id":1,"instrument":"TCS"}"#, "invalid_action"),
            (br#"[1,2,3]"#, "invalid_field"),
        ];
        for (input, reason) in cases {
            let err = parse_order(input).unwrap_err();
            assert_eq!(
                err.reason,
                *reason,
                "{} -> {err}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn timestamp_fast_path_agrees_with_chrono() {
        for t in [
            "2023/03/12, 23:48:37",
            "2023/03/12, 23:48:37.5",
            "2023/03/12, 23:48:37.25",
            "2024/02/29, 00:00:00.001",
            "1999/12/31, 23:59:59.999",
        ] {
            let chrono = NaiveDateTime::parse_from_str(t, ORDER_TIMESTAMP_FORMAT)
                .unwrap()
                .and_utc()
                .timestamp_millis();
            assert_eq!(parse_seed_timestamp(t.as_bytes()), Some(chrono), "{t}");
        }
        for bad in [
            "2023/13/12, 23:48:37",
            "2023/02/30, 00:00:00",
            "2023/03/12, 24:00:00",
            "2023/03/12 23:48:37",
            "2023/03/12, 23:48:3x",
            "2023/03/12, 23:48:37.1234",
        ] {
            assert_eq!(parse_seed_timestamp(bad.as_bytes()), None, "{bad}");
        }
        assert_eq!(
            parse_timestamp("2023-03-12T23:48:37.100Z"),
            Some(1_678_664_917_100)
        );
        assert_eq!(
            parse_timestamp("2023/03/12, 23:48:37.1234"),
            Some(1_678_664_917_123),
            "chrono handles longer fractions"
        );
    }

    #[test]
    fn generated_messages_round_trip_through_the_parser() {
        let cmd = parse_order(SEED.as_bytes()).unwrap().command;
        let msg = OrderMessage::from_command(&cmd, 1_678_664_917_250);
        let json = serde_json::to_vec(&msg).unwrap();
        let back = parse_order(&json).unwrap();
        assert_eq!(back.event_time_ms, Some(1_678_664_917_250));
        let Command::New(mut n) = back.command else {
            panic!()
        };
        assert_eq!(n.trader.as_str(), DEFAULT_TRADER);
        n.trader = FixedStr::new(DEFAULT_TRADER).unwrap();
        assert_eq!(Command::New(n), cmd);
        assert_eq!(
            format_timestamp(1_678_664_917_250),
            "2023/03/12, 23:48:37.250"
        );
    }
}
