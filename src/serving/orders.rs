//! Order entry for the HTTP API: turns a request body into the exact `orders` message the match
//! maker will see, after the same checks the match maker makes (the message parser, then the
//! engine's stateless validation against the instrument table), so a request the engine would
//! reject for its shape is answered 400 with the engine's reason and never published. Checks that
//! need the book (unknown order, duplicate id, post-only would cross…) can only be made by the
//! engine; their outcome appears on `order-events` and at `GET /orders/{id}`.
//!
//! Pure: no Kafka, no clock (the caller passes the time), so it is tested directly.

use crate::schema::{parse_order, OrderEventMessage, OrderMessage};
use kappa_engine::Instruments;
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// A request refused before publication: a stable reason code and a human-readable detail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub reason: String,
    pub detail: String,
}

impl Refused {
    fn new(reason: impl Into<String>, detail: impl Into<String>) -> Self {
        Refused {
            reason: reason.into(),
            detail: detail.into(),
        }
    }
}

/// An order ready to publish: its id, key (the instrument) and payload.
#[derive(Clone, Debug, PartialEq)]
pub struct Prepared {
    pub id: u64,
    pub key: String,
    pub message: OrderMessage,
    pub payload: Vec<u8>,
}

/// Order ids for orders whose request did not name one: a counter starting at the microsecond
/// clock of the server's start (≥ 10^15, far above generated ids, and increasing across restarts).
#[derive(Debug)]
pub struct IdAllocator(AtomicU64);

impl IdAllocator {
    pub fn starting_at(first: u64) -> Self {
        IdAllocator(AtomicU64::new(first))
    }

    pub fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}

/// Raw JSON fields of an order message, kept as sent so numbers reach the parser exactly.
type Fields = BTreeMap<String, Box<RawValue>>;

fn raw(value: impl serde::Serialize) -> Result<Box<RawValue>, Refused> {
    serde_json::value::to_raw_value(&value).map_err(|e| Refused::new("internal", e.to_string()))
}

/// Parses `fields` as the match maker parses an `orders` message, checks the command as the
/// engine would, and builds its canonical message stamped with `now_ms`.
fn finish(fields: &Fields, instruments: &Instruments, now_ms: i64) -> Result<Prepared, Refused> {
    let bytes = serde_json::to_vec(fields).map_err(|e| Refused::new("internal", e.to_string()))?;
    let command = parse_order(&bytes)
        .map_err(|e| Refused::new(e.reason, e.detail))?
        .command;
    command.normalize(instruments).map_err(|e| {
        Refused::new(
            e.reason.code(),
            format!("rejected by validation: {}", e.reason),
        )
    })?;
    let message = OrderMessage::from_command(&command, now_ms);
    let payload = serde_json::to_vec(&message)
        .map_err(|e| Refused::new("internal", format!("serializing the order: {e}")))?;
    Ok(Prepared {
        id: command.order_id(),
        key: command.symbol().to_string(),
        message,
        payload,
    })
}

/// A new order from a `POST /orders` body: the `orders` message format (seed or extended form;
/// `id` optional — one is allocated when absent). The order is stamped with `now_ms`.
pub fn new_order(
    body: &[u8],
    instruments: &Instruments,
    ids: &IdAllocator,
    now_ms: i64,
) -> Result<Prepared, Refused> {
    let mut fields: Fields = serde_json::from_slice(body).map_err(|e| {
        Refused::new(
            "malformed_json",
            format!("the body must be a JSON object: {e}"),
        )
    })?;
    // Only new orders here (absent action = NEW), so the parsed command is always a new order.
    if let Some(action) = fields.get("action") {
        if !action.get().eq_ignore_ascii_case("\"NEW\"") {
            return Err(Refused::new(
                "invalid_action",
                "POST /orders places new orders; use POST /orders/{id}/cancel or /orders/{id}/amend",
            ));
        }
    }
    if !fields.contains_key("id") {
        fields.insert("id".into(), raw(ids.next())?);
    }
    finish(&fields, instruments, now_ms)
}

/// The optional body of `POST /orders/{id}/cancel` and `/amend`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeBody {
    #[serde(default)]
    trader: Option<String>,
    #[serde(default)]
    instrument: Option<String>,
    #[serde(default)]
    price: Option<Box<RawValue>>,
    #[serde(default)]
    quantity: Option<Box<RawValue>>,
}

/// A cancel (`amend` = false) or amend of order `id`. The order's instrument and owner come from
/// its last known status (`known`), or from the body when the server has not seen the order yet.
/// An order known to be finished is refused (`order_not_active`), as is a trader that is not the
/// known owner (`not_order_owner`).
pub fn change_order(
    id: u64,
    amend: bool,
    body: &[u8],
    known: Option<&OrderEventMessage>,
    instruments: &Instruments,
    now_ms: i64,
) -> Result<Prepared, Refused> {
    let body: ChangeBody = if body.iter().all(u8::is_ascii_whitespace) {
        ChangeBody::default()
    } else {
        serde_json::from_slice(body)
            .map_err(|e| Refused::new("invalid_field", format!("bad request body: {e}")))?
    };
    if let Some(k) = known {
        if matches!(k.status.as_str(), "FILLED" | "CANCELLED" | "REJECTED") {
            return Err(Refused::new(
                "order_not_active",
                format!("order {id} is {}", k.status),
            ));
        }
        if body.trader.as_deref().is_some_and(|t| t != k.trader) {
            return Err(Refused::new(
                "not_order_owner",
                format!("order {id} belongs to another trader"),
            ));
        }
        if body
            .instrument
            .as_deref()
            .is_some_and(|i| i != k.instrument)
        {
            return Err(Refused::new(
                "instrument_mismatch",
                format!("order {id} is for {}", k.instrument),
            ));
        }
    }
    let instrument = body
        .instrument
        .clone()
        .or_else(|| known.map(|k| k.instrument.clone()))
        .ok_or_else(|| {
            Refused::new(
                "unknown_order",
                format!("order {id} is not known here yet; name its instrument in the body"),
            )
        })?;
    let trader = body
        .trader
        .clone()
        .or_else(|| known.map(|k| k.trader.clone()));
    let mut fields = Fields::new();
    fields.insert(
        "action".into(),
        raw(if amend { "AMEND" } else { "CANCEL" })?,
    );
    fields.insert("id".into(), raw(id)?);
    fields.insert("instrument".into(), raw(instrument)?);
    if let Some(t) = trader {
        fields.insert("trader".into(), raw(t)?);
    }
    if amend {
        if let Some(p) = body.price {
            fields.insert("price".into(), p);
        }
        if let Some(q) = body.quantity {
            fields.insert("quantity".into(), q);
        }
    } else if body.price.is_some() || body.quantity.is_some() {
        return Err(Refused::new(
            "invalid_field",
            "a cancel takes no price or quantity",
        ));
    }
    finish(&fields, instruments, now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_instruments;

    const NOW: i64 = 1_700_000_000_000;

    fn new(body: &str) -> Result<Prepared, Refused> {
        let ids = IdAllocator::starting_at(5_000_000_000_000_000);
        new_order(body.as_bytes(), &load_instruments(None).unwrap(), &ids, NOW)
    }

    fn reason(r: Result<Prepared, Refused>) -> String {
        r.expect_err("should be refused").reason
    }

    #[test]
    fn the_seed_format_is_accepted_and_an_id_is_allocated_when_missing() {
        let p = new(r#"{"id":1000001,"instrument":"TCS","trxn_type":"BUY","quantity":5.0,"price":15.0,"order_timestamp":"2023/03/12, 23:48:37"}"#).unwrap();
        assert_eq!((p.id, p.key.as_str()), (1_000_001, "TCS"));
        // The published payload is what the match maker parses back to the same command.
        let back = parse_order(&p.payload).unwrap();
        assert_eq!(back.command.order_id(), 1_000_001);
        assert_eq!(back.event_time_ms, Some(NOW));
        let p = new(r#"{"instrument":"INFY","trxn_type":"SELL","quantity":3,"price":"20.05","trader":"T0001"}"#).unwrap();
        assert_eq!(p.id, 5_000_000_000_000_000);
        assert_eq!(p.message.price.unwrap().to_string(), "20.05");
        assert_eq!(p.message.trader.as_deref(), Some("T0001"));
    }

    #[test]
    fn refusals_carry_the_engines_reasons() {
        assert_eq!(reason(new("{")), "malformed_json");
        assert_eq!(reason(new("[1,2]")), "malformed_json");
        assert_eq!(
            reason(new(
                r#"{"instrument":"NOPE","trxn_type":"BUY","quantity":1,"price":1}"#
            )),
            "unknown_instrument"
        );
        assert_eq!(
            reason(new(
                r#"{"instrument":"TCS","trxn_type":"BUY","quantity":1,"price":15.001}"#
            )),
            "price_off_tick"
        );
        assert_eq!(
            reason(new(
                r#"{"instrument":"TCS","trxn_type":"BUY","quantity":0,"price":15}"#
            )),
            "quantity_not_positive"
        );
        assert_eq!(
            reason(new(
                r#"{"instrument":"TCS","trxn_type":"BUY","quantity":1}"#
            )),
            "price_missing"
        );
        assert_eq!(
            reason(new(
                r#"{"instrument":"TCS","trxn_type":"HOLD","quantity":1,"price":1}"#
            )),
            "invalid_side"
        );
        assert_eq!(
            reason(new(
                r#"{"instrument":"TCS","trxn_type":"BUY","quantity":1,"price":1,"colour":"red"}"#
            )),
            "invalid_field"
        );
        assert_eq!(
            reason(new(
                r#"{"instrument":"TCS","trxn_type":"BUY","quantity":1,"order_type":"MARKET","time_in_force":"IOC","post_only":true}"#
            )),
            "post_only_not_allowed"
        );
        assert_eq!(
            reason(new(r#"{"action":"CANCEL","id":5,"instrument":"TCS"}"#)),
            "invalid_action"
        );
        assert_eq!(
            reason(new(
                r#"{"id":-5,"instrument":"TCS","trxn_type":"BUY","quantity":1,"price":1}"#
            )),
            "invalid_field"
        );
    }

    fn known(status: &str) -> OrderEventMessage {
        OrderEventMessage {
            order_id: 9,
            trader: "T0001".into(),
            instrument: "TCS".into(),
            status: status.into(),
            reason: None,
            side: None,
            price: None,
            quantity: None,
            filled: None,
            leaves: None,
            order_type: None,
            time_in_force: None,
            ts_ms: 0,
        }
    }

    fn change(amend: bool, body: &str, k: Option<&OrderEventMessage>) -> Result<Prepared, Refused> {
        change_order(
            9,
            amend,
            body.as_bytes(),
            k,
            &load_instruments(None).unwrap(),
            NOW,
        )
    }

    #[test]
    fn cancel_uses_the_known_order_and_refuses_what_the_engine_would() {
        let live = known("PARTIALLY_FILLED");
        let p = change(false, "", Some(&live)).unwrap();
        assert_eq!(p.message.action.as_deref(), Some("CANCEL"));
        assert_eq!(
            (p.key.as_str(), p.message.trader.as_deref()),
            ("TCS", Some("T0001"))
        );
        assert_eq!(
            reason(change(false, "", Some(&known("FILLED")))),
            "order_not_active"
        );
        assert_eq!(
            reason(change(false, r#"{"trader":"T0002"}"#, Some(&live))),
            "not_order_owner"
        );
        assert_eq!(
            reason(change(false, r#"{"instrument":"INFY"}"#, Some(&live))),
            "instrument_mismatch"
        );
        assert_eq!(reason(change(false, "", None)), "unknown_order");
        let p = change(false, r#"{"instrument":"INFY","trader":"T7"}"#, None).unwrap();
        assert_eq!(p.key, "INFY");
        assert_eq!(
            reason(change(false, r#"{"quantity":1}"#, Some(&live))),
            "invalid_field"
        );
        assert_eq!(reason(change(false, "{oops", Some(&live))), "invalid_field");
    }

    #[test]
    fn amend_checks_price_and_quantity() {
        let live = known("NEW");
        let p = change(true, r#"{"price":15.05,"quantity":2}"#, Some(&live)).unwrap();
        assert_eq!(p.message.action.as_deref(), Some("AMEND"));
        assert_eq!(p.message.price.unwrap().to_string(), "15.05");
        assert_eq!(
            reason(change(true, "{}", Some(&live))),
            "amend_nothing_to_change"
        );
        assert_eq!(
            reason(change(true, r#"{"price":15.001}"#, Some(&live))),
            "price_off_tick"
        );
    }
}
