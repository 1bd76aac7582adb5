//! JSON Schemas of the wire messages, derived from the serde types (utoipa's `ToSchema`, which
//! reads the same serde attributes), for two uses:
//!
//! - the HTTP API's OpenAPI 3.1 description ([`crate::serving::api::ApiDoc`]), whose component
//!   schemas are JSON Schema 2020-12;
//! - one standalone JSON Schema per topic ([`topic_schemas`], committed in `schemas/topics/`;
//!   `kappa schemas write` regenerates them and a test fails when the committed files differ).
//!
//! Fields whose serde form is not the Rust type's (decimals written as exact JSON numbers, names
//! from [`super::names`]' tables, the constant `kind` of analytics messages) take their schema from
//! the functions here, so each rule is written once.

use super::names::{ACTIONS, ORDER_TYPES, SIDES, TIMES_IN_FORCE};
use serde_json::{json, Map, Value};
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type};
use utoipa::openapi::{Ref, RefOr};
use utoipa::ToSchema;

const DECIMAL: &str = "Exact decimal as a JSON number: parse its text as a decimal \
(Python: `json.loads(s, parse_float=Decimal)`), not as a float.";

fn nullable(t: Type) -> SchemaType {
    SchemaType::from_iter([t, Type::Null])
}

/// A price, quantity or money amount: a JSON number whose text is the exact decimal.
pub fn decimal() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Number)
        .description(Some(DECIMAL))
        .into()
}

/// [`decimal`], or null.
pub fn decimal_or_null() -> Schema {
    ObjectBuilder::new()
        .schema_type(nullable(Type::Number))
        .description(Some(DECIMAL))
        .into()
}

/// A decimal as readers accept it: a JSON number, or a string holding one (`"15.05"`).
pub fn decimal_input() -> Schema {
    OneOfBuilder::new()
        .item(decimal())
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(r"^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$")),
        )
        .description(Some(
            "An exact decimal: a JSON number, or a string holding one.",
        ))
        .into()
}

/// [`decimal_input`], or null (the same as absent).
pub fn decimal_input_or_null() -> Schema {
    OneOfBuilder::new()
        .item(decimal_input())
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .into()
}

/// An instrument symbol or trader name: 1–16 printable ASCII characters, no spaces (the engine's
/// `FixedStr`).
pub fn identifier() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(IDENTIFIER))
        .into()
}

/// [`identifier`], or null.
pub fn identifier_or_null() -> Schema {
    ObjectBuilder::new()
        .schema_type(nullable(Type::String))
        .pattern(Some(IDENTIFIER))
        .into()
}

const IDENTIFIER: &str = "^[!-~]{1,16}$";

fn names<T>(table: &[(&'static str, T)], extra: &[&'static str], null: bool) -> Schema {
    let values = table.iter().map(|(n, _)| *n).chain(extra.iter().copied());
    let t = if null {
        nullable(Type::String)
    } else {
        SchemaType::new(Type::String)
    };
    let mut values: Vec<Value> = values.map(Value::from).collect();
    if null {
        values.push(Value::Null);
    }
    ObjectBuilder::new()
        .schema_type(t)
        .enum_values(Some(values))
        .into()
}

/// `trxn_type`, `side`, `aggressor`.
pub fn side() -> Schema {
    names(&SIDES, &[], false)
}

/// An optional side.
pub fn side_or_null() -> Schema {
    names(&SIDES, &[], true)
}

/// An optional `order_type`.
pub fn order_type_or_null() -> Schema {
    names(&ORDER_TYPES, &[], true)
}

/// An optional `time_in_force`.
pub fn tif_or_null() -> Schema {
    names(&TIMES_IN_FORCE, &[], true)
}

/// `action` of an order message (absent: `NEW`).
pub fn action_or_null() -> Schema {
    names(&ACTIONS, &[], true)
}

/// `status` on `order-events` ([`super::names::ORDER_STATUSES`]).
pub fn order_status() -> Schema {
    names::<()>(&[], &super::names::ORDER_STATUSES, false)
}

/// A constant string (the `kind` of an analytics message).
fn constant(value: &'static str) -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some([value]))
        .into()
}

pub fn kind_bar() -> Schema {
    constant("bar")
}
pub fn kind_sma() -> Schema {
    constant("sma")
}
pub fn kind_pnl() -> Schema {
    constant("pnl")
}
pub fn kind_totals() -> Schema {
    constant("totals")
}
pub fn kind_leaderboard() -> Schema {
    constant("leaderboard")
}

/// One `analytics` message: a bar, SMAs, a P&L line or a partition's totals, told apart by `kind`.
pub struct AnalyticsSchema;

impl utoipa::PartialSchema for AnalyticsSchema {
    fn schema() -> RefOr<Schema> {
        use super::analytics::{BarMessage, PnlMessage, SmaMessage, TotalsMessage};
        let mut one = OneOfBuilder::new().description(Some(
            "One analytics message; `kind` says which (`bar`, `sma`, `pnl`, `totals`).",
        ));
        for name in [
            BarMessage::name(),
            SmaMessage::name(),
            PnlMessage::name(),
            TotalsMessage::name(),
        ] {
            one = one.item(Ref::from_schema_name(name));
        }
        one.into()
    }
}

impl ToSchema for AnalyticsSchema {
    fn name() -> std::borrow::Cow<'static, str> {
        "AnalyticsMessage".into()
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        use super::analytics::{BarMessage, PnlMessage, SmaMessage, TotalsMessage};
        fn add<T: ToSchema>(schemas: &mut Vec<(String, RefOr<Schema>)>) {
            schemas.push((T::name().into(), T::schema()));
            T::schemas(schemas);
        }
        add::<BarMessage>(schemas);
        add::<SmaMessage>(schemas);
        add::<PnlMessage>(schemas);
        add::<TotalsMessage>(schemas);
    }
}

/// The JSON Schema (draft 2020-12) of one message type, standalone: its referenced schemas under
/// `$defs`. Objects are closed (`additionalProperties: false`) wherever the type lists its
/// properties: every field a writer emits is described, so a writer that adds one without the
/// schema fails the drift test. (Readers should still ignore fields they do not know.)
pub fn standalone<T: ToSchema>(id: &str, title: &str, description: &str) -> Value {
    let mut deps = Vec::new();
    T::schemas(&mut deps);
    let mut defs = Map::new();
    for (name, schema) in deps {
        defs.insert(name, to_json(&schema));
    }
    let mut root = match to_json(&T::schema()) {
        Value::Object(m) => m,
        other => Map::from_iter([("allOf".to_string(), json!([other]))]),
    };
    root.remove("description");
    let mut out = Map::new();
    out.insert(
        "$schema".into(),
        "https://json-schema.org/draft/2020-12/schema".into(),
    );
    out.insert("$id".into(), id.into());
    out.insert("title".into(), title.into());
    out.insert("description".into(), description.into());
    out.extend(root);
    if !defs.is_empty() {
        out.insert("$defs".into(), Value::Object(defs));
    }
    let mut out = Value::Object(out);
    rewrite(&mut out);
    out
}

fn to_json(s: &RefOr<Schema>) -> Value {
    serde_json::to_value(s).expect("a schema is JSON")
}

/// `#/components/schemas/X` → `#/$defs/X`; properties-listing objects closed.
fn rewrite(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get_mut("$ref") {
                if let Some(name) = r.strip_prefix("#/components/schemas/") {
                    *r = format!("#/$defs/{name}");
                }
            }
            if m.contains_key("properties") && !m.contains_key("additionalProperties") {
                m.insert("additionalProperties".into(), false.into());
            }
            m.values_mut().for_each(rewrite);
        }
        Value::Array(a) => a.iter_mut().for_each(rewrite),
        _ => {}
    }
}

/// Every JSON topic's message schema, by topic name (the internal snapshot topics are bincode,
/// not JSON, and not listed).
pub fn topic_schemas() -> Vec<(&'static str, Value)> {
    use super::{BookMessage, OrderEventMessage, OrderMessage, RejectMessage, TradeMessage};
    let id = |t: &str| format!("https://kappa.exchange/schemas/topics/{t}.json");
    vec![
        (
            "orders",
            standalone::<OrderMessage>(
                &id("orders"),
                "orders",
                "An order, cancel or amend (key: instrument). The seed format is accepted as is; \
                 the match maker refuses unknown fields. Decimals may also be strings.",
            ),
        ),
        (
            "trades",
            standalone::<TradeMessage>(
                &id("trades"),
                "trades",
                "One execution (key: instrument), written by the match maker.",
            ),
        ),
        (
            "order-events",
            standalone::<OrderEventMessage>(
                &id("order-events"),
                "order-events",
                "A change in one order's life (key: trader), written by the match maker.",
            ),
        ),
        (
            "book",
            standalone::<BookMessage>(
                &id("book"),
                "book",
                "Top-5 depth of one instrument (key: instrument; conflated, latest wins).",
            ),
        ),
        (
            "analytics",
            standalone::<AnalyticsSchema>(
                &id("analytics"),
                "analytics",
                "The serving topic: bars and SMAs (SMA calculator), P&L and totals (profit \
                 calculator).",
            ),
        ),
        (
            "rejects",
            standalone::<RejectMessage>(
                &id("rejects"),
                "rejects",
                "Input a job could not use, bounded, with the reason (written by every job).",
            ),
        ),
    ]
}

/// The committed form of a schema: pretty JSON with a final newline.
pub fn render(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).expect("JSON");
    s.push('\n');
    s
}
