//! `orders`: the order message (one struct for reading and writing) and its parser.
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

use super::decimal::{decimal_from_json, json_decimal};
use super::names::{order_type_name, tif_name, ACTIONS, ORDER_TYPES, SIDES, TIMES_IN_FORCE};
use super::scan::Scan;
use chrono::{DateTime, NaiveDateTime};
use kappa_engine::{
    AmendOrder, CancelOrder, Command, CommandKind, FixedStr, NewOrder, OrderType, TimeInForce,
};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;

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
    #[serde(default, borrow, deserialize_with = "optional_str")]
    action: Option<Cow<'a, str>>,
    id: u64,
    #[serde(borrow)]
    instrument: Cow<'a, str>,
    #[serde(default, borrow, deserialize_with = "optional_str")]
    trxn_type: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    quantity: Option<&'a RawValue>,
    #[serde(default, borrow)]
    total_quantity: Option<&'a RawValue>,
    #[serde(default, borrow)]
    price: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "optional_str")]
    order_timestamp: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "optional_str")]
    trader: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "optional_str")]
    order_type: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "optional_str")]
    time_in_force: Option<Cow<'a, str>>,
    #[serde(default)]
    post_only: Option<bool>,
}

/// An optional string borrowed from the input when it has no escapes. serde borrows a plain
/// `Cow<str>` field with `#[serde(borrow)]`, but an `Option<Cow<str>>` always comes back owned
/// (an allocation per present field per order; `tests/memory.rs` caught it).
fn optional_str<'de: 'a, 'a, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Cow<'a, str>>, D::Error> {
    #[derive(Deserialize)]
    struct Borrowed<'a>(#[serde(borrow)] Cow<'a, str>);
    Ok(Option::<Borrowed>::deserialize(d)?.map(|b| b.0))
}

fn decimal_field(
    raw: Option<&str>,
    name: &'static str,
    reason: &'static str,
) -> Result<Option<Decimal>, InputError> {
    match raw {
        None => Ok(None),
        Some(r) => decimal_from_json(r)
            .map(Some)
            .ok_or_else(|| InputError::new(reason, format!("{name} is not a decimal number: {r}"))),
    }
}

/// The fields of an `orders` message as read from its bytes, before any meaning is given to
/// them: strings borrowed (allocated only when they hold JSON escapes), prices and quantities as
/// the raw text of their JSON value (a number, or a string with its quotes), read into decimals by
/// [`decimal_from_json`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OrderFields<'a> {
    pub action: Option<Cow<'a, str>>,
    pub id: u64,
    pub instrument: Cow<'a, str>,
    pub trxn_type: Option<Cow<'a, str>>,
    pub quantity: Option<&'a str>,
    pub total_quantity: Option<&'a str>,
    pub price: Option<&'a str>,
    pub order_timestamp: Option<Cow<'a, str>>,
    pub trader: Option<Cow<'a, str>>,
    pub order_type: Option<Cow<'a, str>>,
    pub time_in_force: Option<Cow<'a, str>>,
    pub post_only: Option<bool>,
}

impl<'a> From<RawOrder<'a>> for OrderFields<'a> {
    fn from(r: RawOrder<'a>) -> Self {
        OrderFields {
            action: r.action,
            id: r.id,
            instrument: r.instrument,
            trxn_type: r.trxn_type,
            quantity: r.quantity.map(RawValue::get),
            total_quantity: r.total_quantity.map(RawValue::get),
            price: r.price.map(RawValue::get),
            order_timestamp: r.order_timestamp,
            trader: r.trader,
            order_type: r.order_type,
            time_in_force: r.time_in_force,
            post_only: r.post_only,
        }
    }
}

impl<'a> OrderFields<'a> {
    /// Reads an `orders` message. A flat object whose strings have no escapes and whose values
    /// are all present (no `null`) — every message our generator, API and FIX gateway write, and
    /// the seed format, in any key order and with any whitespace — is read by a direct scan
    /// ([`Self::scan`]); anything else goes through serde_json, which also words every error.
    /// Both read every input the same way (tested over generated and mutated messages, and
    /// fuzzed: `order_decoder`).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, serde_json::Error> {
        match Self::scan(bytes) {
            Some(f) => Ok(f),
            None => Self::parse_serde(bytes),
        }
    }

    /// serde_json's reading alone: the reference the fast path is checked against.
    pub fn parse_serde(bytes: &'a [u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice::<RawOrder>(bytes).map(Self::from)
    }

    /// The fast path of [`Self::parse`]: `Some` only for a message serde_json reads without
    /// error, and then the same fields; `None` leaves the decision (and the error) to
    /// serde_json — an unknown or repeated key, a `null`, an escape, a missing `id` or
    /// `instrument`, any other type or shape.
    pub fn scan(bytes: &'a [u8]) -> Option<Self> {
        let mut c = Scan::new(bytes)?;
        let mut f = OrderFields::default();
        let mut seen = 0u16;
        c.ws();
        c.lit(b"{")?;
        c.ws();
        if c.peek()? != b'}' {
            loop {
                let key = c.plain_str()?;
                c.ws();
                c.lit(b":")?;
                c.ws();
                let text = |c: &mut Scan<'a>| c.plain_str().map(Cow::Borrowed);
                let field = match key {
                    "action" => {
                        f.action = Some(text(&mut c)?);
                        0
                    }
                    "id" => {
                        f.id = c.unsigned()?;
                        1
                    }
                    "instrument" => {
                        f.instrument = text(&mut c)?;
                        2
                    }
                    "trxn_type" => {
                        f.trxn_type = Some(text(&mut c)?);
                        3
                    }
                    "quantity" => {
                        f.quantity = Some(c.raw_number_or_str()?);
                        4
                    }
                    "total_quantity" => {
                        f.total_quantity = Some(c.raw_number_or_str()?);
                        5
                    }
                    "price" => {
                        f.price = Some(c.raw_number_or_str()?);
                        6
                    }
                    "order_timestamp" => {
                        f.order_timestamp = Some(text(&mut c)?);
                        7
                    }
                    "trader" => {
                        f.trader = Some(text(&mut c)?);
                        8
                    }
                    "order_type" => {
                        f.order_type = Some(text(&mut c)?);
                        9
                    }
                    "time_in_force" => {
                        f.time_in_force = Some(text(&mut c)?);
                        10
                    }
                    "post_only" => {
                        f.post_only = Some(match c.lit(b"true") {
                            Some(()) => true,
                            None => c.lit(b"false").map(|()| false)?,
                        });
                        11
                    }
                    _ => return None,
                };
                if seen & (1 << field) != 0 {
                    return None;
                }
                seen |= 1 << field;
                c.ws();
                match c.peek()? {
                    b',' => {
                        c.i += 1;
                        c.ws();
                    }
                    b'}' => break,
                    _ => return None,
                }
            }
        }
        c.lit(b"}")?;
        c.ws();
        // `id` and `instrument` are required.
        (c.at_end() && seen & 0b110 == 0b110).then_some(f)
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
pub(super) fn parse_seed_timestamp(b: &[u8]) -> Option<i64> {
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
    let raw = OrderFields::parse(bytes).map_err(|e| {
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
    let total_quantity = decimal_field(raw.total_quantity, "total_quantity", "invalid_quantity")?;
    let action = keyword(
        raw.action.as_deref(),
        Some(CommandKind::New),
        &ACTIONS,
        "invalid_action",
        "action",
    )?;
    let command = match action {
        CommandKind::New => {
            let side = keyword(
                raw.trxn_type.as_deref(),
                None,
                &SIDES,
                "invalid_side",
                "trxn_type",
            )?;
            let order_type = keyword(
                raw.order_type.as_deref(),
                Some(OrderType::Limit),
                &ORDER_TYPES,
                "invalid_order_type",
                "order_type",
            )?;
            let time_in_force = keyword(
                raw.time_in_force.as_deref(),
                Some(TimeInForce::Gtc),
                &TIMES_IN_FORCE,
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
        CommandKind::Cancel => Command::Cancel(CancelOrder {
            order_id: raw.id,
            trader,
            instrument,
        }),
        CommandKind::Amend => {
            if quantity.is_some() && total_quantity.is_some() {
                return Err(InputError::new(
                    "invalid_field",
                    "an amend names quantity (the new open quantity) or total_quantity (the new total), not both",
                ));
            }
            Command::Amend(AmendOrder {
                order_id: raw.id,
                trader,
                instrument,
                price,
                quantity: quantity.or(total_quantity),
                total: total_quantity.is_some(),
            })
        }
    };
    if total_quantity.is_some() && !matches!(command, Command::Amend(_)) {
        return Err(InputError::new(
            "invalid_field",
            "total_quantity is for an amend (action AMEND) only",
        ));
    }
    Ok(ParsedOrder {
        command,
        event_time_ms,
    })
}

/// An order as written to `orders` by the generator and the API (the extended seed format).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderMessage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = super::schema::action_or_null)]
    pub action: Option<String>,
    pub id: u64,
    #[schema(schema_with = super::schema::identifier)]
    pub instrument: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = super::schema::side_or_null)]
    pub trxn_type: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "json_decimal::option"
    )]
    #[schema(schema_with = super::schema::decimal_input_or_null)]
    pub quantity: Option<Decimal>,
    /// An amend's new total quantity (filled + open; FIX OrderQty), instead of `quantity` (the new
    /// open quantity): the engine leaves `total_quantity − filled` open.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "json_decimal::option"
    )]
    #[schema(schema_with = super::schema::decimal_input_or_null)]
    pub total_quantity: Option<Decimal>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "json_decimal::option"
    )]
    #[schema(schema_with = super::schema::decimal_input_or_null)]
    pub price: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = super::schema::identifier_or_null)]
    pub trader: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = super::schema::order_type_or_null)]
    pub order_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = super::schema::tif_or_null)]
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
                total_quantity: None,
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
                total_quantity: None,
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
                quantity: a.quantity.filter(|_| !a.total),
                total_quantity: a.quantity.filter(|_| a.total),
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
