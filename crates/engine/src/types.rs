//! Small value types shared by commands, events and the book: sides, order types, time in force,
//! integer price/quantity units and fixed-size identifiers.
//!
//! Everything here is `Copy` and allocation-free so events can be produced on the hot path without
//! touching the heap.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Client-assigned order identifier. Unique over the lifetime of an engine.
pub type OrderId = u64;
/// A price in integer ticks of the instrument (price = ticks × tick size).
pub type Ticks = i64;
/// A quantity in integer lots of the instrument (quantity = lots × lot size).
pub type Lots = u64;

/// Index of an instrument in the engine's [`Instruments`](crate::Instruments) table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct InstrumentId(pub u16);

/// Buy or sell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    /// The side this side trades against.
    #[inline]
    pub fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }

    /// Upper-case wire name (`BUY` / `SELL`).
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "BUY",
            Side::Sell => "SELL",
        }
    }
}

/// Limit orders carry a price; market orders take whatever liquidity there is and never rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OrderType {
    Limit,
    Market,
}

/// How long an order may stay in the book.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TimeInForce {
    /// Good till cancelled: the unfilled remainder rests in the book.
    Gtc,
    /// Immediate or cancel: trade what can be traded now, cancel the rest.
    Ioc,
    /// Fill or kill: fill the whole quantity now or do nothing at all.
    Fok,
}

/// Error from building a [`FixedStr`] identifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("identifier is empty")]
    Empty,
    #[error("identifier is longer than 16 bytes")]
    TooLong,
    #[error("identifier must be printable ASCII without spaces")]
    BadChar,
}

/// A short printable-ASCII identifier stored inline in 16 bytes (NUL padded), so it is `Copy`,
/// hashes and compares as two machine words, and never allocates.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FixedStr([u8; 16]);

impl FixedStr {
    /// Maximum length in bytes.
    pub const MAX_LEN: usize = 16;

    /// Validates and stores `s` (1–16 bytes of printable ASCII, no spaces).
    pub fn new(s: &str) -> Result<Self, IdError> {
        let b = s.as_bytes();
        if b.is_empty() {
            return Err(IdError::Empty);
        }
        if b.len() > Self::MAX_LEN {
            return Err(IdError::TooLong);
        }
        if !b.iter().all(|c| c.is_ascii_graphic()) {
            return Err(IdError::BadChar);
        }
        let mut buf = [0u8; 16];
        buf[..b.len()].copy_from_slice(b);
        Ok(FixedStr(buf))
    }

    /// The identifier as a string slice.
    pub fn as_str(&self) -> &str {
        let len = self.0.iter().position(|&c| c == 0).unwrap_or(16);
        // Only printable ASCII is ever stored (checked in `new`, and in deserialization).
        std::str::from_utf8(&self.0[..len]).unwrap_or("")
    }
}

impl fmt::Debug for FixedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl fmt::Display for FixedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for FixedStr {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        FixedStr::new(s)
    }
}

impl Serialize for FixedStr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for FixedStr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        FixedStr::new(&s).map_err(serde::de::Error::custom)
    }
}

/// Trader (account) identifier, e.g. `"T042"` or `"alice"`.
pub type TraderId = FixedStr;
/// Instrument symbol, e.g. `"TCS"`.
pub type Symbol = FixedStr;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_str_round_trips_and_validates() {
        let t = FixedStr::new("T042").unwrap();
        assert_eq!(t.as_str(), "T042");
        assert_eq!(t.to_string(), "T042");
        assert_eq!(FixedStr::new(""), Err(IdError::Empty));
        assert_eq!(FixedStr::new("12345678901234567"), Err(IdError::TooLong));
        assert_eq!(FixedStr::new("a b"), Err(IdError::BadChar));
        assert_eq!(FixedStr::new("é"), Err(IdError::BadChar));
        let full = FixedStr::new("1234567890123456").unwrap();
        assert_eq!(full.as_str(), "1234567890123456");
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"T042\"");
        assert_eq!(serde_json::from_str::<FixedStr>(&json).unwrap(), t);
        assert!(serde_json::from_str::<FixedStr>("\"bad id\"").is_err());
    }
}
