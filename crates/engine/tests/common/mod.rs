//! Helpers shared by the engine's integration tests: a test instrument table, command builders
//! and event filters.
#![allow(dead_code)]

pub mod reference;

use kappa_engine::{
    AmendOrder, CancelOrder, Command, Event, EventBody, FixedStr, Instruments, NewOrder, OrderId,
    OrderStatus, OrderType, OrderUpdate, RejectReason, Side, TimeInForce, Trade,
};
use rust_decimal::Decimal;
use std::str::FromStr;

/// `XYZ`: tick 1, lot 1 (prices in tests read as ticks). `ABC`: tick 0.5, lot 0.1.
pub fn instruments() -> Instruments {
    Instruments::from_toml_str(
        r#"
        [[instrument]]
        symbol = "XYZ"
        tick_size = "1"
        lot_size = "1"
        max_price = "100000"
        max_quantity = "100000"
        [[instrument]]
        symbol = "ABC"
        tick_size = "0.5"
        lot_size = "0.1"
        max_price = "1000"
        max_quantity = "1000"
        "#,
    )
    .unwrap()
}

pub fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

pub fn id(s: &str) -> FixedStr {
    FixedStr::new(s).unwrap()
}

/// A fully specified new-order command.
#[derive(Clone, Copy)]
pub struct Order {
    pub cmd: NewOrder,
}

impl Order {
    pub fn limit(order_id: OrderId, trader: &str, side: Side, price: i64, qty: i64) -> Self {
        Order {
            cmd: NewOrder {
                order_id,
                trader: id(trader),
                instrument: id("XYZ"),
                side,
                order_type: OrderType::Limit,
                time_in_force: TimeInForce::Gtc,
                post_only: false,
                price: Some(Decimal::from(price)),
                quantity: Decimal::from(qty),
            },
        }
    }

    pub fn market(order_id: OrderId, trader: &str, side: Side, qty: i64) -> Self {
        let mut o = Order::limit(order_id, trader, side, 0, qty);
        o.cmd.order_type = OrderType::Market;
        o.cmd.price = None;
        o.cmd.time_in_force = TimeInForce::Ioc;
        o
    }

    pub fn tif(mut self, tif: TimeInForce) -> Self {
        self.cmd.time_in_force = tif;
        self
    }

    pub fn post_only(mut self) -> Self {
        self.cmd.post_only = true;
        self
    }

    pub fn on(mut self, symbol: &str) -> Self {
        self.cmd.instrument = id(symbol);
        self
    }

    pub fn build(self) -> Command {
        Command::New(self.cmd)
    }
}

pub fn cancel(order_id: OrderId, trader: &str) -> Command {
    Command::Cancel(CancelOrder {
        order_id,
        trader: id(trader),
        instrument: id("XYZ"),
    })
}

pub fn amend(order_id: OrderId, trader: &str, price: Option<i64>, qty: Option<i64>) -> Command {
    Command::Amend(AmendOrder {
        order_id,
        trader: id(trader),
        instrument: id("XYZ"),
        price: price.map(Decimal::from),
        quantity: qty.map(Decimal::from),
        total: false,
    })
}

/// An amend whose quantity is the order's new total (filled + open).
pub fn amend_total(order_id: OrderId, trader: &str, price: Option<i64>, total: i64) -> Command {
    match amend(order_id, trader, price, Some(total)) {
        Command::Amend(a) => Command::Amend(AmendOrder { total: true, ..a }),
        _ => unreachable!(),
    }
}

pub fn trades(events: &[Event]) -> Vec<Trade> {
    events
        .iter()
        .filter_map(|e| match e.body {
            EventBody::Trade(t) => Some(t),
            _ => None,
        })
        .collect()
}

pub fn updates(events: &[Event]) -> Vec<OrderUpdate> {
    events
        .iter()
        .filter_map(|e| match e.body {
            EventBody::Order(u) => Some(u),
            _ => None,
        })
        .collect()
}

/// (order id, status, filled, leaves) of every order update, in order.
pub fn statuses(events: &[Event]) -> Vec<(OrderId, OrderStatus, u64, u64)> {
    updates(events)
        .iter()
        .map(|u| (u.order_id, u.status, u.filled, u.leaves))
        .collect()
}

pub fn rejection(events: &[Event]) -> Option<RejectReason> {
    events.iter().find_map(|e| match e.body {
        EventBody::Rejected(r) => Some(r.reason),
        _ => None,
    })
}
