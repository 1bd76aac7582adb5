//! Order entry for the HTTP API: turns a request body into the exact `orders` message the match
//! maker will see, after the same checks the match maker makes (the message parser, then the
//! engine's stateless validation against the instrument table), so a request the engine would
//! reject for its shape is answered 400 with the engine's reason and never published. Checks that
//! need the book (unknown order, duplicate id, post-only would cross…) can only be made by the
//! engine; their outcome appears on `order-events` and at `GET /orders/{id}`.
//!
//! Pure: no Kafka, no clock (the caller passes the time), so it is tested directly.

use crate::wire::{parse_order, OrderEventMessage, OrderMessage};
use kappa_engine::Instruments;
use rand::Rng as _;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Mutex;

/// Reason for a body naming another trader than the credential's.
pub const TRADER_MISMATCH: &str = "trader_mismatch";
/// Reason for acting on another trader's order.
pub const NOT_ORDER_OWNER: &str = "not_order_owner";

/// A request refused before publication: a stable reason code and a human-readable detail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub reason: String,
    pub detail: String,
}

impl Refused {
    pub fn new(reason: impl Into<String>, detail: impl Into<String>) -> Self {
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
    /// The client's idempotency key, when it sent one.
    pub client_order_id: Option<String>,
}

/// First id of the range the API allocates from: `[2^52, 2^53)`. Ids below are for clients that
/// choose their own and for the order generator; every id stays below 2^53, exact in JavaScript.
pub const API_ID_BASE: u64 = 1 << 52;

/// Longest client order id (idempotency key).
pub const MAX_CLIENT_ORDER_ID: usize = 64;

/// Order ids for orders whose request did not name one, in `[API_ID_BASE, 2^53)`:
/// - with a client order id (idempotency key): `SHA-256(key ‖ trader ‖ client order id)`, so a
///   retry gets the same id on any replica that shares the key (`--order-id-key`, a Secret in
///   k8s) and the engine refuses a second order with it; nobody without the key can predict it;
/// - without one: 52 random bits from the OS-seeded CSPRNG.
///
/// Either way two replicas never coordinate, and a collision with a live or recently finished
/// order (≈ 2^-52 × their number, per order) is refused by the engine as `duplicate_order_id`.
pub struct IdAllocator {
    key: [u8; 32],
}

impl std::fmt::Debug for IdAllocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdAllocator { key: <secret> }")
    }
}

impl IdAllocator {
    /// An allocator keyed by `secret` (replicas sharing it give a retry the same id).
    pub fn with_key(secret: &[u8]) -> Self {
        IdAllocator {
            key: Sha256::digest(secret).into(),
        }
    }

    /// An allocator with a random key (idempotency within this process only).
    pub fn random() -> Self {
        IdAllocator {
            key: rand::rng().random(),
        }
    }

    fn in_range(bits: u64) -> u64 {
        API_ID_BASE | (bits & (API_ID_BASE - 1))
    }

    /// A fresh, unpredictable id.
    pub fn fresh(&self) -> u64 {
        Self::in_range(rand::rng().random())
    }

    /// The id of the order `trader` places with idempotency key `client_order_id`.
    pub fn for_client_order(&self, trader: &str, client_order_id: &str) -> u64 {
        let mut h = Sha256::new();
        h.update(self.key);
        h.update((trader.len() as u32).to_be_bytes());
        h.update(trader.as_bytes());
        h.update(client_order_id.as_bytes());
        let digest = h.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        Self::in_range(u64::from_be_bytes(first))
    }
}

/// Ids this process published recently (bounded), so a retry that arrives before the order's
/// first event is not published twice.
#[derive(Debug)]
pub struct RecentIds {
    cap: usize,
    inner: Mutex<(HashSet<u64>, VecDeque<u64>)>,
}

impl RecentIds {
    pub fn new(cap: usize) -> Self {
        RecentIds {
            cap: cap.max(1),
            inner: Mutex::new((HashSet::new(), VecDeque::new())),
        }
    }

    /// Records `id`; `false` when it was already recorded.
    pub fn insert(&self, id: u64) -> bool {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (set, fifo) = &mut *guard;
        if !set.insert(id) {
            return false;
        }
        fifo.push_back(id);
        while fifo.len() > self.cap {
            if let Some(old) = fifo.pop_front() {
                set.remove(&old);
            }
        }
        true
    }

    /// Forgets `id` (its publication failed: a retry may publish it).
    pub fn remove(&self, id: u64) {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if guard.0.remove(&id) {
            guard.1.retain(|&x| x != id);
        }
    }

    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
    check(&bytes, instruments, now_ms)
}

/// Validates an order built by another entry point (the FIX gateway) exactly as a request body
/// is validated here: parsed as the match maker parses `orders`, checked against the instrument
/// table, and its canonical message stamped with `now_ms`.
pub fn prepare(
    message: &OrderMessage,
    instruments: &Instruments,
    now_ms: i64,
) -> Result<Prepared, Refused> {
    let bytes = serde_json::to_vec(message).map_err(|e| Refused::new("internal", e.to_string()))?;
    check(&bytes, instruments, now_ms)
}

fn check(bytes: &[u8], instruments: &Instruments, now_ms: i64) -> Result<Prepared, Refused> {
    let command = parse_order(bytes)
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
        client_order_id: None,
    })
}

/// A client order id: 1–64 characters of `A-Z a-z 0-9 . _ : -`.
fn check_client_order_id(id: &str) -> Result<(), Refused> {
    let ok = !id.is_empty()
        && id.len() <= MAX_CLIENT_ORDER_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:".contains(&b));
    match ok {
        true => Ok(()),
        false => Err(Refused::new(
            "invalid_client_order_id",
            format!(
                "client_order_id must be 1-{MAX_CLIENT_ORDER_ID} characters of A-Z a-z 0-9 . _ : -"
            ),
        )),
    }
}

/// The authenticated `trader` is the order's: a body naming another is refused
/// (`trader_mismatch`), one naming none gets it.
fn own_trader(fields: &mut Fields, trader: &str) -> Result<(), Refused> {
    if let Some(named) = fields.get("trader") {
        if serde_json::from_str::<String>(named.get()).ok().as_deref() != Some(trader) {
            return Err(Refused::new(
                TRADER_MISMATCH,
                format!("this API key trades as {trader}; the body names another trader"),
            ));
        }
    }
    fields.insert("trader".into(), raw(trader)?);
    Ok(())
}

/// A new order from a `POST /orders` body: the `orders` message format (seed or extended form;
/// `id` optional — one is allocated when absent, see [`IdAllocator`]), plus an optional
/// `client_order_id` (or the `Idempotency-Key` header, passed as `idempotency_key`): a retry with
/// the same one gets the same order id, so it never creates a second order. The order is stamped
/// with `now_ms`.
pub fn new_order(
    body: &[u8],
    trader: &str,
    idempotency_key: Option<&str>,
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
    own_trader(&mut fields, trader)?;
    // Only new orders here (absent or null action = NEW, as the match maker reads it), so the
    // parsed command is always a new order.
    if let Some(action) = fields.get("action") {
        if action.get() != "null" && !action.get().eq_ignore_ascii_case("\"NEW\"") {
            return Err(Refused::new(
                "invalid_action",
                "POST /orders places new orders; use POST /orders/{id}/cancel or /orders/{id}/amend",
            ));
        }
    }
    let in_body = match fields.remove("client_order_id") {
        Some(v) => Some(serde_json::from_str::<String>(v.get()).map_err(|_| {
            Refused::new(
                "invalid_client_order_id",
                "client_order_id must be a string",
            )
        })?),
        None => None,
    };
    let client_order_id = match (in_body, idempotency_key) {
        (Some(a), Some(b)) if a != b => {
            return Err(Refused::new(
                "invalid_client_order_id",
                "client_order_id and the Idempotency-Key header differ",
            ))
        }
        (a, b) => a.or_else(|| b.map(str::to_string)),
    };
    if let Some(c) = &client_order_id {
        check_client_order_id(c)?;
    }
    match fields.get("id") {
        Some(id) => {
            if client_order_id.is_some() {
                return Err(Refused::new(
                    "invalid_client_order_id",
                    "send either an id or a client_order_id, not both",
                ));
            }
            if serde_json::from_str::<u64>(id.get()).is_ok_and(|id| id >= API_ID_BASE) {
                return Err(Refused::new(
                    "reserved_order_id",
                    format!("ids from {API_ID_BASE} up are allocated by the server; omit id"),
                ));
            }
        }
        None => {
            let id = match &client_order_id {
                Some(c) => ids.for_client_order(trader, c),
                None => ids.fresh(),
            };
            fields.insert("id".into(), raw(id)?);
        }
    }
    // The server stamps the order with its own time: a client's `order_timestamp` (the seed
    // format carries one) is accepted and ignored whatever its text, as described; only its type
    // is checked (a number is refused).
    if fields
        .get("order_timestamp")
        .is_some_and(|t| t.get().starts_with('"'))
    {
        fields.remove("order_timestamp");
    }
    let mut prepared = finish(&fields, instruments, now_ms)?;
    prepared.client_order_id = client_order_id;
    Ok(prepared)
}

/// The body of `POST /orders`: an `orders` message (the seed format or its extensions) without
/// `id` (allocated by the server) or with one below 2^52, and optionally a `client_order_id`.
/// Read as the match maker reads `orders` ([`parse_order`]); this type describes it for the
/// OpenAPI document.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"instrument": "TCS", "trxn_type": "BUY", "quantity": 5, "price": 15.05}))]
#[allow(dead_code)]
pub struct NewOrderRequest {
    /// Only `NEW` here (cancel and amend have their own endpoints).
    #[schema(schema_with = new_action)]
    action: Option<String>,
    /// Your own id, below 2^52 (omit it and the server allocates one).
    #[schema(minimum = 1, maximum = 4503599627370495_u64)]
    id: Option<u64>,
    /// Instrument symbol (see `/instruments`).
    #[schema(schema_with = crate::wire::schema::identifier)]
    instrument: String,
    #[schema(schema_with = crate::wire::schema::side)]
    trxn_type: String,
    /// A positive multiple of the instrument's lot size.
    #[schema(schema_with = crate::wire::schema::decimal_input)]
    quantity: String,
    /// On the instrument's tick; required for `LIMIT`, absent for `MARKET`.
    #[schema(schema_with = crate::wire::schema::decimal_input_or_null)]
    price: Option<String>,
    /// Accepted and ignored: the server stamps the order with its own time.
    order_timestamp: Option<String>,
    /// The API key's trader (another is refused `trader_mismatch`); filled in when absent.
    #[schema(schema_with = crate::wire::schema::identifier_or_null)]
    trader: Option<String>,
    #[schema(schema_with = crate::wire::schema::order_type_or_null)]
    order_type: Option<String>,
    #[schema(schema_with = crate::wire::schema::tif_or_null)]
    time_in_force: Option<String>,
    post_only: Option<bool>,
    /// Idempotency key (or the `Idempotency-Key` header): a retry with the same one gets the
    /// same order id. Not with `id`.
    #[schema(pattern = "^[A-Za-z0-9._:-]{1,64}$")]
    client_order_id: Option<String>,
}

fn new_action() -> utoipa::openapi::schema::Schema {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            utoipa::openapi::schema::Type::String,
            utoipa::openapi::schema::Type::Null,
        ]))
        .enum_values(Some([
            serde_json::Value::from("NEW"),
            serde_json::Value::Null,
        ]))
        .into()
}

/// The body of `POST /orders/{id}/cancel` (optional) and `/amend`: the order's instrument when the
/// server has not seen the order yet, and for an amend the new price and/or open quantity.
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeRequest {
    /// The API key's trader, if named.
    #[serde(default)]
    #[schema(schema_with = crate::wire::schema::identifier_or_null)]
    trader: Option<String>,
    #[serde(default)]
    #[schema(schema_with = crate::wire::schema::identifier_or_null)]
    instrument: Option<String>,
    #[serde(default)]
    #[schema(schema_with = crate::wire::schema::decimal_input_or_null)]
    price: Option<Box<RawValue>>,
    #[serde(default)]
    #[schema(schema_with = crate::wire::schema::decimal_input_or_null)]
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
    trader: &str,
    known: Option<&OrderEventMessage>,
    instruments: &Instruments,
    now_ms: i64,
) -> Result<Prepared, Refused> {
    let empty = body.iter().all(u8::is_ascii_whitespace) || body.trim_ascii() == b"null";
    let body: ChangeRequest = if empty {
        ChangeRequest::default()
    } else {
        serde_json::from_slice(body)
            .map_err(|e| Refused::new("invalid_field", format!("bad request body: {e}")))?
    };
    if body.trader.as_deref().is_some_and(|t| t != trader) {
        return Err(Refused::new(
            TRADER_MISMATCH,
            format!("this API key trades as {trader}; the body names another trader"),
        ));
    }
    if let Some(k) = known {
        if k.trader != trader {
            return Err(Refused::new(
                NOT_ORDER_OWNER,
                format!("order {id} belongs to another trader"),
            ));
        }
        if matches!(k.status.as_str(), "FILLED" | "CANCELLED" | "REJECTED") {
            return Err(Refused::new(
                "order_not_active",
                format!("order {id} is {}", k.status),
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
    let mut fields = Fields::new();
    fields.insert(
        "action".into(),
        raw(if amend { "AMEND" } else { "CANCEL" })?,
    );
    fields.insert("id".into(), raw(id)?);
    fields.insert("instrument".into(), raw(instrument)?);
    // The engine, too, refuses a cancel or amend from anyone but the order's owner.
    fields.insert("trader".into(), raw(trader)?);
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
        let ids = IdAllocator::with_key(b"test key");
        new_order(
            body.as_bytes(),
            "T0001",
            None,
            &load_instruments(None).unwrap(),
            &ids,
            NOW,
        )
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
        assert!((API_ID_BASE..1 << 53).contains(&p.id), "{}", p.id);
        assert_eq!(p.message.price.unwrap().to_string(), "20.05");
        assert_eq!(p.message.trader.as_deref(), Some("T0001"));
    }

    #[test]
    fn the_trader_is_the_credentials_never_the_bodys() {
        let p = new(r#"{"instrument":"TCS","trxn_type":"BUY","quantity":1,"price":15}"#).unwrap();
        assert_eq!(p.message.trader.as_deref(), Some("T0001"));
        assert!(String::from_utf8_lossy(&p.payload).contains(r#""trader":"T0001""#));
        for body in [
            r#"{"instrument":"TCS","trxn_type":"BUY","quantity":1,"price":15,"trader":"T0002"}"#,
            r#"{"instrument":"TCS","trxn_type":"BUY","quantity":1,"price":15,"trader":7}"#,
            r#"{"instrument":"TCS","trxn_type":"BUY","quantity":1,"price":15,"trader":null}"#,
        ] {
            assert_eq!(reason(new(body)), TRADER_MISMATCH, "{body}");
        }
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
        // Found by schemathesis (positive data): the description allows a null action, and the
        // match maker reads it as NEW; the API refused it as `invalid_action`.
        // Also found by it: `order_timestamp` is described as accepted and ignored (the server
        // stamps its own time), and an unparsable one was refused `invalid_timestamp`.
        let p = new(r#"{"order_timestamp":"¾ not a time","instrument":"TCS","trxn_type":"BUY","quantity":1,"price":15}"#).unwrap();
        assert_eq!(parse_order(&p.payload).unwrap().event_time_ms, Some(NOW));
        assert_eq!(
            reason(new(
                r#"{"order_timestamp":5,"instrument":"TCS","trxn_type":"BUY","quantity":1,"price":15}"#
            )),
            "invalid_field"
        );
        for action in [r#""action":null,"#, r#""action":"new","#, ""] {
            let body = format!(
                r#"{{{action}"instrument":"TCS","trxn_type":"BUY","quantity":1,"price":15}}"#
            );
            assert!(new(&body).is_ok(), "{body}");
        }
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
            last_price: None,
            last_quantity: None,
            command: None,
            order_type: None,
            time_in_force: None,
            ts_ms: 0,
        }
    }

    fn change(amend: bool, body: &str, k: Option<&OrderEventMessage>) -> Result<Prepared, Refused> {
        change_as("T0001", amend, body, k)
    }

    fn change_as(
        trader: &str,
        amend: bool,
        body: &str,
        k: Option<&OrderEventMessage>,
    ) -> Result<Prepared, Refused> {
        change_order(
            9,
            amend,
            body.as_bytes(),
            trader,
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
        // The trader is the credential's: a body naming another is refused, and another
        // trader's credential cannot touch the order.
        assert_eq!(
            reason(change(false, r#"{"trader":"T0002"}"#, Some(&live))),
            TRADER_MISMATCH
        );
        assert_eq!(
            reason(change_as("T0002", false, "", Some(&live))),
            NOT_ORDER_OWNER
        );
        assert_eq!(
            reason(change_as("T0002", true, r#"{"price":15.05}"#, Some(&live))),
            NOT_ORDER_OWNER
        );
        assert_eq!(
            reason(change_as("T0002", false, "", Some(&known("FILLED")))),
            NOT_ORDER_OWNER,
            "whose order it is is checked first"
        );
        assert_eq!(
            reason(change(false, r#"{"instrument":"INFY"}"#, Some(&live))),
            "instrument_mismatch"
        );
        assert_eq!(reason(change(false, "", None)), "unknown_order");
        // Unknown here yet: published with the credential's trader (the engine checks the owner).
        let p = change_as("T7", false, r#"{"instrument":"INFY"}"#, None).unwrap();
        assert_eq!(
            (p.key.as_str(), p.message.trader.as_deref()),
            ("INFY", Some("T7"))
        );
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

    #[test]
    fn allocated_ids_are_unpredictable_and_a_client_order_id_makes_retries_idempotent() {
        let inst = load_instruments(None).unwrap();
        let body = r#"{"instrument":"INFY","trxn_type":"SELL","quantity":3,"price":"20.05","trader":"T0001","client_order_id":"abc-1"}"#;
        let a = IdAllocator::with_key(b"shared secret");
        let b = IdAllocator::with_key(b"shared secret"); // another replica
        let first = new_order(body.as_bytes(), "T0001", None, &inst, &a, NOW).unwrap();
        let retry = new_order(body.as_bytes(), "T0001", None, &inst, &b, NOW + 5).unwrap();
        assert_eq!(
            first.id, retry.id,
            "same key, trader and client order id: same order id"
        );
        assert_eq!(first.client_order_id.as_deref(), Some("abc-1"));
        // The payload carries no client_order_id (the match maker's format).
        assert!(!String::from_utf8_lossy(&first.payload).contains("abc-1"));
        // The header form gives the same id; another key, trader or client id does not.
        let plain = body.replace(r#","client_order_id":"abc-1""#, "");
        let header = new_order(plain.as_bytes(), "T0001", Some("abc-1"), &inst, &a, NOW).unwrap();
        assert_eq!(header.id, first.id);
        let other_key = IdAllocator::with_key(b"another secret");
        assert_ne!(
            new_order(body.as_bytes(), "T0001", None, &inst, &other_key, NOW)
                .unwrap()
                .id,
            first.id
        );
        let other_trader = body.replace("T0001", "T0002");
        assert_ne!(
            new_order(other_trader.as_bytes(), "T0002", None, &inst, &a, NOW)
                .unwrap()
                .id,
            first.id
        );
        // Without a client id, fresh ids: all distinct, all in the API range, below 2^53.
        let ids: std::collections::HashSet<u64> = (0..10_000)
            .map(|_| {
                new_order(plain.as_bytes(), "T0001", None, &inst, &a, NOW)
                    .unwrap()
                    .id
            })
            .collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids.iter().all(|id| (API_ID_BASE..1 << 53).contains(id)));
        // Refusals: both forms differing, a bad client id, an id with a client id, a reserved id.
        let refuse = |body: &str, header: Option<&str>| {
            new_order(body.as_bytes(), "T0001", header, &inst, &a, NOW)
                .unwrap_err()
                .reason
        };
        assert_eq!(refuse(body, Some("other")), "invalid_client_order_id");
        assert_eq!(
            refuse(&body.replace("abc-1", "has space"), None),
            "invalid_client_order_id"
        );
        assert_eq!(
            refuse(&body.replace("abc-1", &"x".repeat(65)), None),
            "invalid_client_order_id"
        );
        assert_eq!(
            refuse(&body.replace(r#""abc-1""#, "7"), None),
            "invalid_client_order_id"
        );
        let with_id = plain.replace(r#"{"instrument""#, r#"{"id":42,"instrument""#);
        assert_eq!(refuse(&with_id, Some("abc-1")), "invalid_client_order_id");
        let reserved = plain.replace(
            r#"{"instrument""#,
            &format!(r#"{{"id":{},"instrument""#, API_ID_BASE + 1),
        );
        assert_eq!(refuse(&reserved, None), "reserved_order_id");
        assert_eq!(
            new_order(with_id.as_bytes(), "T0001", None, &inst, &a, NOW)
                .unwrap()
                .id,
            42
        );
    }

    #[test]
    fn recent_ids_are_bounded() {
        let r = RecentIds::new(3);
        assert!(r.insert(1));
        assert!(!r.insert(1));
        for id in 2..=5 {
            assert!(r.insert(id));
        }
        assert_eq!(r.len(), 3);
        assert!(r.insert(1), "the oldest were forgotten");
        r.remove(5);
        assert!(r.insert(5));
    }
}
