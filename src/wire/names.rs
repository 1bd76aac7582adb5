//! The wire names of the engine's enumerations, in one table each: what the parser accepts
//! (case-insensitively) and what every writer emits. The engine itself knows no wire names.

use kappa_engine::{CommandKind, OrderStatus, OrderType, Side, TimeInForce};

/// `trxn_type`, `side`, `aggressor`.
pub const SIDES: [(&str, Side); 2] = [("BUY", Side::Buy), ("SELL", Side::Sell)];

/// `order_type`.
pub const ORDER_TYPES: [(&str, OrderType); 2] =
    [("LIMIT", OrderType::Limit), ("MARKET", OrderType::Market)];

/// `time_in_force`.
pub const TIMES_IN_FORCE: [(&str, TimeInForce); 3] = [
    ("GTC", TimeInForce::Gtc),
    ("IOC", TimeInForce::Ioc),
    ("FOK", TimeInForce::Fok),
];

/// `action` on `orders` (absent: `NEW`), and `command` of a `REJECTED` order event.
pub const ACTIONS: [(&str, CommandKind); 3] = [
    ("NEW", CommandKind::New),
    ("CANCEL", CommandKind::Cancel),
    ("AMEND", CommandKind::Amend),
];

/// The name of `value` in `table` (every table above is total over its enum).
fn name_in<T: PartialEq + Copy>(table: &[(&'static str, T)], value: T) -> &'static str {
    table
        .iter()
        .find(|(_, v)| *v == value)
        .map_or("UNKNOWN", |(n, _)| n)
}

pub fn side_name(s: Side) -> &'static str {
    name_in(&SIDES, s)
}

pub fn order_type_name(t: OrderType) -> &'static str {
    name_in(&ORDER_TYPES, t)
}

pub fn tif_name(t: TimeInForce) -> &'static str {
    name_in(&TIMES_IN_FORCE, t)
}

pub fn action_name(c: CommandKind) -> &'static str {
    name_in(&ACTIONS, c)
}

/// Every `status` on `order-events`: the engine's statuses ([`status_name`]) and the events that
/// are not engine order updates (`ACCEPTED` before the first update, `REJECTED`).
pub const ORDER_STATUSES: [&str; 7] = [
    "ACCEPTED",
    "REJECTED",
    "NEW",
    "PARTIALLY_FILLED",
    "FILLED",
    "AMENDED",
    "CANCELLED",
];

/// `status` on `order-events` (the engine's statuses; `ACCEPTED`, `REJECTED` and `AMENDED`
/// complete the set for events that are not engine order updates).
pub fn status_name(s: OrderStatus) -> &'static str {
    match s {
        OrderStatus::New => "NEW",
        OrderStatus::PartiallyFilled => "PARTIALLY_FILLED",
        OrderStatus::Filled => "FILLED",
        OrderStatus::Amended => "AMENDED",
        OrderStatus::Cancelled(_) => "CANCELLED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_its_one_name() {
        assert_eq!(side_name(Side::Buy), "BUY");
        assert_eq!(side_name(Side::Sell), Side::Sell.as_str());
        assert_eq!(order_type_name(OrderType::Market), "MARKET");
        assert_eq!(tif_name(TimeInForce::Fok), "FOK");
        for s in [
            OrderStatus::New,
            OrderStatus::PartiallyFilled,
            OrderStatus::Filled,
            OrderStatus::Amended,
        ] {
            assert!(ORDER_STATUSES.contains(&status_name(s)));
        }
        for table in [
            SIDES.map(|(n, _)| n).to_vec(),
            ORDER_TYPES.map(|(n, _)| n).to_vec(),
        ] {
            let mut names = table.clone();
            names.dedup();
            assert_eq!(names, table);
        }
    }
}
