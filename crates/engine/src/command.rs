//! Commands into the engine, in two forms:
//!
//! - [`Command`]: the API edge. Symbols and `rust_decimal` prices/quantities, exactly as a client
//!   sends them.
//! - [`Request`]: normalized. Instrument index, integer ticks and lots. [`Command::normalize`]
//!   turns one into the other, validating against the instrument's tick/lot/limits, and
//!   [`Request::validate`] re-checks the integer form (so a `Request` built by hand is just as safe).

use crate::event::{CommandKind, RejectReason};
use crate::instrument::Instruments;
use crate::types::{
    InstrumentId, Lots, OrderId, OrderType, Side, Symbol, Ticks, TimeInForce, TraderId,
};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Enter a new order.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewOrder {
    pub order_id: OrderId,
    pub trader: TraderId,
    pub instrument: Symbol,
    pub side: Side,
    pub order_type: OrderType,
    /// Market orders with `Gtc` are treated as `Ioc` (a market order never rests).
    pub time_in_force: TimeInForce,
    /// Only for GTC limit orders: reject instead of trading on arrival.
    pub post_only: bool,
    /// Required for limit orders, forbidden for market orders.
    pub price: Option<Decimal>,
    pub quantity: Decimal,
}

/// Cancel a live order. Only its owner may cancel it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CancelOrder {
    pub order_id: OrderId,
    pub trader: TraderId,
    pub instrument: Symbol,
}

/// Amend a live order's price and/or open quantity.
///
/// * quantity down at the same price keeps time priority;
/// * quantity up or a new price loses it (the order goes to the back of its new level), and a
///   new price that crosses the book trades immediately, like a new order.
///
/// `quantity` is the new *open* (leaves) quantity, not the original order quantity — unless
/// `total` is set: then it is the order's new total quantity (FIX OrderQty of a cancel/replace),
/// and the open quantity becomes `quantity − filled` with `filled` as the engine knows it when
/// the amend arrives (a fill racing the request cannot make the order larger than asked;
/// `quantity_not_positive` when nothing would remain open).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AmendOrder {
    pub order_id: OrderId,
    pub trader: TraderId,
    pub instrument: Symbol,
    pub price: Option<Decimal>,
    pub quantity: Option<Decimal>,
    #[serde(default)]
    pub total: bool,
}

/// A command at the API edge.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Command {
    New(NewOrder),
    Cancel(CancelOrder),
    Amend(AmendOrder),
}

/// Normalized new order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewRequest {
    pub order_id: OrderId,
    pub trader: TraderId,
    pub instrument: InstrumentId,
    pub side: Side,
    pub order_type: OrderType,
    pub time_in_force: TimeInForce,
    pub post_only: bool,
    pub price: Option<Ticks>,
    pub quantity: Lots,
}

/// Normalized cancel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelRequest {
    pub order_id: OrderId,
    pub trader: TraderId,
    pub instrument: InstrumentId,
}

/// Normalized amend; `quantity` is the new open quantity, or with `total` the new total
/// quantity ([`AmendOrder`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AmendRequest {
    pub order_id: OrderId,
    pub trader: TraderId,
    pub instrument: InstrumentId,
    pub price: Option<Ticks>,
    pub quantity: Option<Lots>,
    #[serde(default)]
    pub total: bool,
}

/// A command in integer units, ready for the matching core.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    New(NewRequest),
    Cancel(CancelRequest),
    Amend(AmendRequest),
}

/// A command that failed normalization, with what is needed to report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Invalid {
    pub command: CommandKind,
    pub order_id: OrderId,
    pub trader: TraderId,
    pub instrument: Option<InstrumentId>,
    pub reason: RejectReason,
}

impl Command {
    /// Which kind of command this is.
    pub fn kind(&self) -> CommandKind {
        match self {
            Command::New(_) => CommandKind::New,
            Command::Cancel(_) => CommandKind::Cancel,
            Command::Amend(_) => CommandKind::Amend,
        }
    }

    /// The order id the command is about.
    pub fn order_id(&self) -> OrderId {
        match self {
            Command::New(c) => c.order_id,
            Command::Cancel(c) => c.order_id,
            Command::Amend(c) => c.order_id,
        }
    }

    /// The trader who sent the command.
    pub fn trader(&self) -> TraderId {
        match self {
            Command::New(c) => c.trader,
            Command::Cancel(c) => c.trader,
            Command::Amend(c) => c.trader,
        }
    }

    /// The instrument symbol the command names.
    pub fn symbol(&self) -> Symbol {
        match self {
            Command::New(c) => c.instrument,
            Command::Cancel(c) => c.instrument,
            Command::Amend(c) => c.instrument,
        }
    }

    /// Validates the command against the instrument table and converts it to integer units.
    pub fn normalize(&self, instruments: &Instruments) -> Result<Request, Invalid> {
        let fail = |instrument, reason| Invalid {
            command: self.kind(),
            order_id: self.order_id(),
            trader: self.trader(),
            instrument,
            reason,
        };
        let Some(id) = instruments.id_of(self.symbol()) else {
            return Err(fail(None, RejectReason::UnknownInstrument));
        };
        let request = match *self {
            Command::New(c) => {
                let price = c
                    .price
                    .map(|p| instruments.price_to_ticks(id, p))
                    .transpose()
                    .map_err(|r| fail(Some(id), r))?;
                let quantity = instruments
                    .qty_to_lots(id, c.quantity)
                    .map_err(|r| fail(Some(id), r))?;
                Request::New(NewRequest {
                    order_id: c.order_id,
                    trader: c.trader,
                    instrument: id,
                    side: c.side,
                    order_type: c.order_type,
                    time_in_force: c.time_in_force,
                    post_only: c.post_only,
                    price,
                    quantity,
                })
            }
            Command::Cancel(c) => Request::Cancel(CancelRequest {
                order_id: c.order_id,
                trader: c.trader,
                instrument: id,
            }),
            Command::Amend(c) => {
                let price = c
                    .price
                    .map(|p| instruments.price_to_ticks(id, p))
                    .transpose()
                    .map_err(|r| fail(Some(id), r))?;
                let quantity = c
                    .quantity
                    .map(|q| instruments.qty_to_lots(id, q))
                    .transpose()
                    .map_err(|r| fail(Some(id), r))?;
                Request::Amend(AmendRequest {
                    order_id: c.order_id,
                    trader: c.trader,
                    instrument: id,
                    price,
                    quantity,
                    total: c.total,
                })
            }
        };
        let mut request = request;
        request
            .validate(instruments)
            .map_err(|r| fail(Some(id), r))?;
        Ok(request)
    }
}

impl Request {
    /// Which kind of command this is.
    pub fn kind(&self) -> CommandKind {
        match self {
            Request::New(_) => CommandKind::New,
            Request::Cancel(_) => CommandKind::Cancel,
            Request::Amend(_) => CommandKind::Amend,
        }
    }

    /// Stateless checks of the integer form: instrument exists, units within limits, and the
    /// combination of order type / time in force / post-only makes sense. Market orders with
    /// `Gtc` are rewritten to `Ioc` here.
    pub fn validate(&mut self, instruments: &Instruments) -> Result<(), RejectReason> {
        match self {
            Request::New(n) => {
                if !instruments.contains(n.instrument) {
                    return Err(RejectReason::UnknownInstrument);
                }
                match (n.order_type, n.price) {
                    (OrderType::Limit, None) => return Err(RejectReason::PriceMissing),
                    (OrderType::Market, Some(_)) => return Err(RejectReason::PriceNotAllowed),
                    (OrderType::Limit, Some(p)) => instruments.check_ticks(n.instrument, p)?,
                    (OrderType::Market, None) => {
                        if n.time_in_force == TimeInForce::Gtc {
                            n.time_in_force = TimeInForce::Ioc;
                        }
                    }
                }
                instruments.check_lots(n.instrument, n.quantity)?;
                if n.post_only
                    && (n.order_type != OrderType::Limit || n.time_in_force != TimeInForce::Gtc)
                {
                    return Err(RejectReason::PostOnlyNotAllowed);
                }
            }
            Request::Cancel(c) => {
                if !instruments.contains(c.instrument) {
                    return Err(RejectReason::UnknownInstrument);
                }
            }
            Request::Amend(a) => {
                if !instruments.contains(a.instrument) {
                    return Err(RejectReason::UnknownInstrument);
                }
                if a.price.is_none() && a.quantity.is_none() {
                    return Err(RejectReason::AmendNothingToChange);
                }
                if let Some(p) = a.price {
                    instruments.check_ticks(a.instrument, p)?;
                }
                if let Some(q) = a.quantity {
                    instruments.check_lots(a.instrument, q)?;
                }
            }
        }
        Ok(())
    }
}
