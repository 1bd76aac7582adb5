//! Everything the engine emits: acknowledgements, rejections with a specific reason, trades,
//! order status updates and top-N depth snapshots.
//!
//! Events are small `Copy` structs with integer prices (ticks) and quantities (lots); conversion
//! back to decimals happens at the edge with [`Instruments`](crate::Instruments). Every event
//! carries a sequence number from one engine-wide counter, so the output stream is totally ordered.

use crate::types::{InstrumentId, Lots, OrderId, OrderType, Side, Ticks, TimeInForce, TraderId};
use serde::{Deserialize, Serialize};

/// Which command an event answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CommandKind {
    New,
    Cancel,
    Amend,
}

/// Declares [`RejectReason`] from one table — variant, its doc, its stable code — so the enum,
/// [`RejectReason::ALL`] and [`RejectReason::code`] cannot disagree.
macro_rules! reject_reasons {
    ($($(#[doc = $doc:literal])* $name:ident => $code:literal,)*) => {
        /// Why a command was rejected. A rejected command changes nothing in the book.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum RejectReason {
            $($(#[doc = $doc])* $name,)*
        }

        impl RejectReason {
            /// Every reason (metrics register their codes before the first reject).
            pub const ALL: [RejectReason; [$($code),*].len()] = [$(RejectReason::$name),*];

            /// Stable snake_case code, used on the wire and in metrics labels.
            pub fn code(self) -> &'static str {
                match self {
                    $(RejectReason::$name => $code,)*
                }
            }
        }
    };
}

reject_reasons! {
    /// The instrument symbol is not configured.
    UnknownInstrument => "unknown_instrument",
    /// A cancel/amend named a different instrument than the order's.
    InstrumentMismatch => "instrument_mismatch",
    /// A limit order without a price.
    PriceMissing => "price_missing",
    /// A market order that carries a price.
    PriceNotAllowed => "price_not_allowed",
    /// Price is zero or negative.
    PriceNotPositive => "price_not_positive",
    /// Price is not a multiple of the instrument's tick size.
    PriceOffTick => "price_off_tick",
    /// Price is above the instrument's maximum price.
    PriceTooLarge => "price_too_large",
    /// Quantity is zero or negative.
    QuantityNotPositive => "quantity_not_positive",
    /// Quantity is not a multiple of the instrument's lot size.
    QuantityOffLot => "quantity_off_lot",
    /// Quantity is above the instrument's maximum order quantity.
    QuantityTooLarge => "quantity_too_large",
    /// Post-only is only meaningful for a GTC limit order.
    PostOnlyNotAllowed => "post_only_not_allowed",
    /// A post-only order (or amend) would have traded on arrival.
    PostOnlyWouldCross => "post_only_would_cross",
    /// The order id was already used on this engine.
    DuplicateOrderId => "duplicate_order_id",
    /// Cancel/amend of an order id the engine has never accepted.
    UnknownOrder => "unknown_order",
    /// Cancel/amend of an order that is already filled or cancelled.
    OrderNotActive => "order_not_active",
    /// Cancel/amend by a trader who does not own the order.
    NotOrderOwner => "not_order_owner",
    /// An amend that names neither a new price nor a new quantity.
    AmendNothingToChange => "amend_nothing_to_change",
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// Why an accepted order (or its remainder) left the book without filling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CancelReason {
    /// The owner asked for it.
    Requested,
    /// Unfilled remainder of an IOC order.
    IocRemainder,
    /// Unfilled remainder of a market order (not enough liquidity).
    MarketRemainder,
    /// A FOK order that could not be filled completely; nothing traded.
    FokUnfillable,
    /// Self-trade prevention: the incoming order reached a resting order of the same trader; the
    /// incoming remainder is cancelled and the resting order is left untouched.
    SelfTradePrevention,
}

impl CancelReason {
    /// Stable snake_case code.
    pub fn code(self) -> &'static str {
        match self {
            CancelReason::Requested => "requested",
            CancelReason::IocRemainder => "ioc_remainder",
            CancelReason::MarketRemainder => "market_remainder",
            CancelReason::FokUnfillable => "fok_unfillable",
            CancelReason::SelfTradePrevention => "self_trade_prevention",
        }
    }
}

/// Lifecycle status of an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OrderStatus {
    /// Resting in the book with nothing filled yet.
    New,
    /// Some quantity filled, some still open (resting, or about to be cancelled).
    PartiallyFilled,
    /// Completely filled; the order is finished.
    Filled,
    /// Price and/or open quantity changed by an amend; the order is still live.
    Amended,
    /// Removed from the book; the order is finished. `leaves` is zero and the cancelled quantity
    /// is `quantity - filled`.
    Cancelled(CancelReason),
}

impl OrderStatus {
    /// True when the order can no longer trade.
    pub fn is_final(self) -> bool {
        matches!(self, OrderStatus::Filled | OrderStatus::Cancelled(_))
    }
}

/// A new order passed validation and was taken by the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    pub order_id: OrderId,
    pub trader: TraderId,
    pub instrument: InstrumentId,
    pub side: Side,
    pub order_type: OrderType,
    pub time_in_force: TimeInForce,
    pub post_only: bool,
    /// Limit price; `None` for market orders.
    pub price: Option<Ticks>,
    pub quantity: Lots,
}

/// A command was refused; nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    pub command: CommandKind,
    pub order_id: OrderId,
    pub trader: TraderId,
    /// The instrument, when the command named a known one.
    pub instrument: Option<InstrumentId>,
    pub reason: RejectReason,
}

/// One execution between a resting (maker) order and an incoming (taker) order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trade {
    /// Engine-wide trade number, starting at 1.
    pub trade_id: u64,
    pub instrument: InstrumentId,
    /// Always the resting order's price.
    pub price: Ticks,
    pub quantity: Lots,
    /// Side of the incoming order.
    pub aggressor: Side,
    pub maker_order_id: OrderId,
    pub maker_trader: TraderId,
    pub taker_order_id: OrderId,
    pub taker_trader: TraderId,
}

impl Trade {
    /// (order id, trader) of the buying side.
    pub fn buyer(&self) -> (OrderId, TraderId) {
        match self.aggressor {
            Side::Buy => (self.taker_order_id, self.taker_trader),
            Side::Sell => (self.maker_order_id, self.maker_trader),
        }
    }

    /// (order id, trader) of the selling side.
    pub fn seller(&self) -> (OrderId, TraderId) {
        match self.aggressor {
            Side::Buy => (self.maker_order_id, self.maker_trader),
            Side::Sell => (self.taker_order_id, self.taker_trader),
        }
    }
}

/// Status of one order after something happened to it (FIX execution-report style).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderUpdate {
    pub order_id: OrderId,
    pub trader: TraderId,
    pub instrument: InstrumentId,
    pub side: Side,
    pub status: OrderStatus,
    /// Current limit price; `None` for market orders.
    pub price: Option<Ticks>,
    /// Total quantity of the order: `filled + leaves`, plus the cancelled quantity once cancelled.
    pub quantity: Lots,
    /// Cumulative filled quantity.
    pub filled: Lots,
    /// Open quantity still able to trade (zero once the order is final).
    pub leaves: Lots,
}

/// The payload of an [`Event`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventBody {
    Accepted(Accepted),
    Rejected(Rejected),
    Trade(Trade),
    Order(OrderUpdate),
}

/// One engine output with its sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Engine-wide output sequence number (shared with depth updates), starting at 1.
    pub seq: u64,
    pub body: EventBody,
}

/// Upper bound on the depth an engine can be configured to publish.
pub const MAX_DEPTH_LEVELS: usize = 10;

/// One aggregated price level.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepthLevel {
    pub price: Ticks,
    pub quantity: Lots,
    pub orders: u32,
}

/// Up to [`MAX_DEPTH_LEVELS`] levels of one side, best first, stored inline.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepthSide {
    len: u8,
    levels: [DepthLevel; MAX_DEPTH_LEVELS],
}

impl DepthSide {
    pub(crate) fn push(&mut self, level: DepthLevel) {
        self.levels[self.len as usize] = level;
        self.len += 1;
    }

    /// Makes this side equal to `levels` (best first, at most [`MAX_DEPTH_LEVELS`]), writing only
    /// what differs and keeping the unused entries zeroed (as [`DepthSide::push`] leaves them), so
    /// the result is identical to a side built from scratch. Returns whether anything changed.
    #[inline]
    pub(crate) fn refresh(&mut self, levels: impl Iterator<Item = DepthLevel>) -> bool {
        let mut changed = false;
        let mut len = 0;
        for level in levels.take(MAX_DEPTH_LEVELS) {
            let slot = &mut self.levels[len];
            if *slot != level {
                *slot = level;
                changed = true;
            }
            len += 1;
        }
        let old = self.len as usize;
        if len != old {
            changed = true;
            for slot in self.levels.iter_mut().take(old).skip(len) {
                *slot = DepthLevel::default();
            }
            self.len = len as u8;
        }
        changed
    }

    /// Builds a side from levels given best first (at most [`MAX_DEPTH_LEVELS`] are kept).
    pub fn from_levels(levels: &[DepthLevel]) -> DepthSide {
        let mut side = DepthSide::default();
        for level in levels.iter().take(MAX_DEPTH_LEVELS) {
            side.push(*level);
        }
        side
    }

    /// The levels, best price first.
    pub fn levels(&self) -> &[DepthLevel] {
        &self.levels[..self.len as usize]
    }
}

/// Top-N view of one instrument's book: bids best (highest) first, asks best (lowest) first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Depth {
    pub bids: DepthSide,
    pub asks: DepthSide,
}

/// A [`Depth`] emitted because it changed since the previous emission for that instrument.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepthUpdate {
    /// Taken from the same counter as [`Event::seq`].
    pub seq: u64,
    pub instrument: InstrumentId,
    pub depth: Depth,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lvl(price: Ticks) -> DepthLevel {
        DepthLevel {
            price,
            quantity: price.unsigned_abs() + 7,
            orders: 1,
        }
    }

    /// `refresh` leaves exactly what building from scratch gives (unused entries zeroed) and
    /// reports a change exactly when the levels differ.
    #[test]
    fn refresh_equals_a_side_built_from_scratch() {
        let cases: [&[Ticks]; 7] = [
            &[],
            &[5, 4, 3],
            &[5, 4, 3],
            &[5, 4, 2],
            &[9, 8, 7, 6, 5, 4, 3, 2, 1, 0, -1, -2],
            &[1],
            &[],
        ];
        let mut side = DepthSide::default();
        let mut previous = DepthSide::default();
        for prices in cases {
            let levels: Vec<DepthLevel> = prices.iter().map(|&p| lvl(p)).collect();
            let changed = side.refresh(levels.iter().copied());
            let fresh = DepthSide::from_levels(&levels);
            assert_eq!(side, fresh, "{prices:?}");
            assert_eq!(changed, fresh != previous, "{prices:?}");
            previous = fresh;
        }
    }
}

#[cfg(test)]
mod reason_tests {
    use super::RejectReason;

    #[test]
    fn all_lists_every_reason_once_with_distinct_codes() {
        // Each code is its variant's name in snake_case.
        for r in RejectReason::ALL {
            let mut snake = String::new();
            for (i, c) in format!("{r:?}").chars().enumerate() {
                if c.is_ascii_uppercase() && i > 0 {
                    snake.push('_');
                }
                snake.push(c.to_ascii_lowercase());
            }
            assert_eq!(r.code(), snake);
        }
        let codes: std::collections::BTreeSet<&str> =
            RejectReason::ALL.iter().map(|r| r.code()).collect();
        assert_eq!(codes.len(), RejectReason::ALL.len());
    }
}
