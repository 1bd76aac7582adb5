//! The match maker's outputs: `trades`, `order-events`, `book`.

use super::decimal::{json_decimal, write_units};
use super::names::{order_type_name, side_name, status_name, tif_name};
use super::scan::Scan;
use kappa_engine::{
    DepthSide, InstrumentId, Instruments, OrderStatus, OrderUpdate, Trade, TraderId,
};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// Globally unique trade id: the match-maker partition in the high digits, the engine's trade
/// number below (`3_000_000_000_123` = trade 123 of partition 3).
pub fn global_trade_id(partition: i32, trade_id: u64) -> u64 {
    partition as u64 * 1_000_000_000_000 + trade_id
}

/// One execution, on `trades`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TradeMessage {
    pub trade_id: u64,
    #[schema(schema_with = super::schema::identifier)]
    pub instrument: String,
    #[serde(with = "json_decimal")]
    #[schema(schema_with = super::schema::decimal)]
    pub price: Decimal,
    #[serde(with = "json_decimal")]
    #[schema(schema_with = super::schema::decimal)]
    pub quantity: Decimal,
    #[schema(schema_with = super::schema::identifier)]
    pub buyer: String,
    #[schema(schema_with = super::schema::identifier)]
    pub seller: String,
    pub buy_order_id: u64,
    pub sell_order_id: u64,
    /// `BUY` or `SELL`: the side of the incoming (taker) order.
    #[schema(schema_with = super::schema::side)]
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
            aggressor: side_name(t.aggressor).to_string(),
            ts_ms,
        }
    }
}

/// The fields of a `trades` message that the analytics use, borrowed from the payload (names
/// allocate only if they contain JSON escapes, decimals never): what the SMA and profit
/// calculators decode per trade. Fields they do not use (ids, aggressor) are skipped unread, so a
/// trade missing them is still analysed — a tolerant reader of its own topic.
#[derive(Debug, PartialEq, Deserialize)]
pub struct TradeFields<'a> {
    #[serde(borrow)]
    pub instrument: Cow<'a, str>,
    #[serde(with = "json_decimal")]
    pub price: Decimal,
    #[serde(with = "json_decimal")]
    pub quantity: Decimal,
    #[serde(borrow)]
    pub buyer: Cow<'a, str>,
    #[serde(borrow)]
    pub seller: Cow<'a, str>,
    pub ts_ms: i64,
}

impl<'a> TradeFields<'a> {
    /// Reads a `trades` message. The layout [`write_trade`] produces (keys in its order, no
    /// whitespace, names without escapes) is read by a direct scan ([`Self::parse_canonical`]);
    /// anything else goes through serde_json. Both read every input the same way (tested over
    /// generated and mutated messages, and fuzzed: `trade_decoder`).
    pub fn parse(payload: &'a [u8]) -> Result<Self, serde_json::Error> {
        match Self::parse_canonical(payload) {
            Some(t) => Ok(t),
            None => serde_json::from_slice(payload),
        }
    }

    /// The fast path of [`Self::parse`]: `Some` only for a message in [`write_trade`]'s exact
    /// layout whose values serde_json would also accept, and then the same fields; `None` leaves
    /// the decision (and the error) to serde_json.
    pub fn parse_canonical(b: &'a [u8]) -> Option<Self> {
        let mut c = Scan::new(b)?;
        c.lit(b"{\"trade_id\":")?;
        c.number()?;
        c.lit(b",\"instrument\":")?;
        let instrument = c.plain_str()?;
        c.lit(b",\"price\":")?;
        let price = c.number()?;
        c.lit(b",\"quantity\":")?;
        let quantity = c.number()?;
        c.lit(b",\"buyer\":")?;
        let buyer = c.plain_str()?;
        c.lit(b",\"seller\":")?;
        let seller = c.plain_str()?;
        c.lit(b",\"buy_order_id\":")?;
        c.number()?;
        c.lit(b",\"sell_order_id\":")?;
        c.number()?;
        c.lit(b",\"aggressor\":")?;
        c.plain_str()?;
        c.lit(b",\"ts_ms\":")?;
        let ts_ms = c.number()?;
        c.lit(b"}")?;
        if c.i != b.len() {
            return None;
        }
        // An integer token (no fraction or exponent) that fits: what serde reads as an i64.
        if ts_ms.bytes().any(|ch| matches!(ch, b'.' | b'e' | b'E')) {
            return None;
        }
        Some(TradeFields {
            instrument: Cow::Borrowed(instrument),
            price: super::decimal::decimal_from_json(price)?,
            quantity: super::decimal::decimal_from_json(quantity)?,
            buyer: Cow::Borrowed(buyer),
            seller: Cow::Borrowed(seller),
            ts_ms: ts_ms.parse().ok()?,
        })
    }
}

/// Writes the `trades` message of engine trade `t` straight into `out`: byte for byte what
/// serde_json writes for [`TradeMessage::new`] (tested), without building the message — no
/// allocation, the match maker's hot path (`cargo bench --bench codec`: BENCHMARKS.md).
pub fn write_trade(
    t: &Trade,
    instruments: &Instruments,
    partition: i32,
    ts_ms: i64,
    out: &mut Vec<u8>,
) {
    let (buy_order_id, buyer) = t.buyer();
    let (sell_order_id, seller) = t.seller();
    let mut int = itoa::Buffer::new();
    out.extend_from_slice(b"{\"trade_id\":");
    out.extend_from_slice(
        int.format(global_trade_id(partition, t.trade_id))
            .as_bytes(),
    );
    out.extend_from_slice(b",\"instrument\":");
    json_str(instruments.symbol(t.instrument).as_str(), out);
    let spec = instruments.spec(t.instrument);
    out.extend_from_slice(b",\"price\":");
    write_units(t.price, spec.tick_size, out);
    out.extend_from_slice(b",\"quantity\":");
    write_units(t.quantity, spec.lot_size, out);
    out.extend_from_slice(b",\"buyer\":");
    json_str(buyer.as_str(), out);
    out.extend_from_slice(b",\"seller\":");
    json_str(seller.as_str(), out);
    out.extend_from_slice(b",\"buy_order_id\":");
    out.extend_from_slice(int.format(buy_order_id).as_bytes());
    out.extend_from_slice(b",\"sell_order_id\":");
    out.extend_from_slice(int.format(sell_order_id).as_bytes());
    out.extend_from_slice(b",\"aggressor\":\"");
    out.extend_from_slice(side_name(t.aggressor).as_bytes());
    out.extend_from_slice(b"\",\"ts_ms\":");
    out.extend_from_slice(int.format(ts_ms).as_bytes());
    out.push(b'}');
}

/// Writes the `order-events` message of engine update `u` — with the order's terms when `terms`
/// is its acceptance — straight into `out`: byte for byte what serde_json writes for
/// [`OrderEventMessage::from_update`] (and [`OrderEventMessage::with_terms`]; tested), without
/// building the message.
pub fn write_order_update(
    u: &OrderUpdate,
    terms: Option<&kappa_engine::Accepted>,
    fill: Option<&kappa_engine::Trade>,
    instruments: &Instruments,
    ts_ms: i64,
    out: &mut Vec<u8>,
) {
    let mut int = itoa::Buffer::new();
    out.extend_from_slice(b"{\"order_id\":");
    out.extend_from_slice(int.format(u.order_id).as_bytes());
    out.extend_from_slice(b",\"trader\":");
    json_str(u.trader.as_str(), out);
    out.extend_from_slice(b",\"instrument\":");
    json_str(instruments.symbol(u.instrument).as_str(), out);
    out.extend_from_slice(b",\"status\":\"");
    out.extend_from_slice(status_name(u.status).as_bytes());
    out.push(b'"');
    if let OrderStatus::Cancelled(r) = u.status {
        out.extend_from_slice(b",\"reason\":");
        json_str(r.code(), out);
    }
    out.extend_from_slice(b",\"side\":\"");
    out.extend_from_slice(side_name(u.side).as_bytes());
    out.push(b'"');
    let spec = instruments.spec(u.instrument);
    if let Some(p) = u.price {
        out.extend_from_slice(b",\"price\":");
        write_units(p, spec.tick_size, out);
    }
    out.extend_from_slice(b",\"quantity\":");
    write_units(u.quantity, spec.lot_size, out);
    out.extend_from_slice(b",\"filled\":");
    write_units(u.filled, spec.lot_size, out);
    out.extend_from_slice(b",\"leaves\":");
    write_units(u.leaves, spec.lot_size, out);
    if let Some(t) = fill {
        let spec = instruments.spec(t.instrument);
        out.extend_from_slice(b",\"last_price\":");
        write_units(t.price, spec.tick_size, out);
        out.extend_from_slice(b",\"last_quantity\":");
        write_units(t.quantity, spec.lot_size, out);
    }
    if let Some(a) = terms {
        out.extend_from_slice(b",\"order_type\":\"");
        out.extend_from_slice(order_type_name(a.order_type).as_bytes());
        out.extend_from_slice(b"\",\"time_in_force\":\"");
        out.extend_from_slice(tif_name(a.time_in_force).as_bytes());
        out.push(b'"');
    }
    out.extend_from_slice(b",\"ts_ms\":");
    out.extend_from_slice(int.format(ts_ms).as_bytes());
    out.push(b'}');
}

/// A JSON string as serde_json writes it (identifiers here are printable ASCII: only `"` and
/// `\` need escaping; anything else goes through serde_json).
fn json_str(s: &str, out: &mut Vec<u8>) {
    if s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// A change in one order's life, on `order-events` (key = trader).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderEventMessage {
    pub order_id: u64,
    #[schema(schema_with = super::schema::identifier)]
    pub trader: String,
    #[schema(schema_with = super::schema::identifier)]
    pub instrument: String,
    /// `ACCEPTED`, `REJECTED`, `NEW`, `PARTIALLY_FILLED`, `FILLED`, `AMENDED`, `CANCELLED`.
    #[schema(schema_with = super::schema::order_status)]
    pub status: String,
    /// Cancel or reject reason code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// On `REJECTED`: the refused command (`NEW`, `CANCEL`, `AMEND`), so a cancel refused for an
    /// order still open is not mistaken for the order's own rejection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = super::schema::action_or_null)]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = super::schema::side_or_null)]
    pub side: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "json_decimal::option"
    )]
    #[schema(schema_with = super::schema::decimal_or_null)]
    pub price: Option<Decimal>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "json_decimal::option"
    )]
    #[schema(schema_with = super::schema::decimal_or_null)]
    pub quantity: Option<Decimal>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "json_decimal::option"
    )]
    #[schema(schema_with = super::schema::decimal_or_null)]
    pub filled: Option<Decimal>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "json_decimal::option"
    )]
    #[schema(schema_with = super::schema::decimal_or_null)]
    pub leaves: Option<Decimal>,
    /// On a fill (`PARTIALLY_FILLED`, `FILLED`): the price of this fill (the resting order's).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "json_decimal::option"
    )]
    #[schema(schema_with = super::schema::decimal_or_null)]
    pub last_price: Option<Decimal>,
    /// On a fill: the quantity of this fill (`filled` is cumulative).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "json_decimal::option"
    )]
    #[schema(schema_with = super::schema::decimal_or_null)]
    pub last_quantity: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = super::schema::order_type_or_null)]
    pub order_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = super::schema::tif_or_null)]
    pub time_in_force: Option<String>,
    pub ts_ms: i64,
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
            command: None,
            side: Some(side_name(u.side).into()),
            price: u.price.map(|p| instruments.ticks_to_price(u.instrument, p)),
            quantity: q(u.quantity),
            filled: q(u.filled),
            leaves: q(u.leaves),
            last_price: None,
            last_quantity: None,
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
            command: None,
            side: Some(side_name(a.side).into()),
            price: a.price.map(|p| instruments.ticks_to_price(a.instrument, p)),
            quantity: Some(instruments.lots_to_qty(a.instrument, a.quantity)),
            filled: None,
            leaves: None,
            last_price: None,
            last_quantity: None,
            order_type: Some(order_type_name(a.order_type).into()),
            time_in_force: Some(tif_name(a.time_in_force).into()),
            ts_ms,
        }
    }

    /// Adds the price and quantity of the fill this update reports.
    pub fn with_last(&mut self, fill: &kappa_engine::Trade, instruments: &Instruments) {
        self.last_price = Some(instruments.ticks_to_price(fill.instrument, fill.price));
        self.last_quantity = Some(instruments.lots_to_qty(fill.instrument, fill.quantity));
    }

    pub fn rejected(
        command: kappa_engine::CommandKind,
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
            command: Some(super::names::action_name(command).into()),
            side: None,
            price: None,
            quantity: None,
            filled: None,
            leaves: None,
            last_price: None,
            last_quantity: None,
            order_type: None,
            time_in_force: None,
            ts_ms,
        }
    }
}

/// One aggregated price level on `book`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LevelMessage {
    #[serde(with = "json_decimal")]
    #[schema(schema_with = super::schema::decimal)]
    pub price: Decimal,
    #[serde(with = "json_decimal")]
    #[schema(schema_with = super::schema::decimal)]
    pub quantity: Decimal,
    pub orders: u32,
}

/// Top-N depth of one instrument, on `book` (conflated: the latest state wins; compare
/// `(partition, as_of_offset)` to discard stale copies).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BookMessage {
    #[schema(schema_with = super::schema::identifier)]
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
