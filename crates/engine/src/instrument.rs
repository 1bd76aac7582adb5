//! Instrument reference data (tick size, lot size, limits) and the conversion between decimal
//! prices/quantities at the API edge and the integer ticks/lots used inside the engine.
//!
//! Loaded from TOML (see `data/instruments.toml`):
//!
//! ```toml
//! [[instrument]]
//! symbol = "TCS"
//! tick_size = "0.05"
//! lot_size = "1"
//! max_price = "100000"
//! max_quantity = "1000000"
//! ```

use crate::event::RejectReason;
use crate::types::{FixedStr, InstrumentId, Lots, Symbol, Ticks};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Largest price in ticks / quantity in lots the engine accepts for any instrument (2^48). Keeps
/// `price × quantity` far from overflow in downstream i128 notional arithmetic.
pub const MAX_UNITS: u64 = 1 << 48;

/// Static description of one tradable instrument.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstrumentSpec {
    /// Ticker, e.g. `TCS`.
    pub symbol: String,
    /// Human-readable name.
    #[serde(default)]
    pub name: String,
    /// Smallest price increment.
    pub tick_size: Decimal,
    /// Smallest quantity increment.
    pub lot_size: Decimal,
    /// Highest acceptable limit price (orders above it are rejected as absurd).
    pub max_price: Decimal,
    /// Largest acceptable order quantity.
    pub max_quantity: Decimal,
    /// Reference price used by generators and demos (not used for matching).
    #[serde(default)]
    pub reference_price: Option<Decimal>,
}

/// Error in the instrument configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("instrument config is not valid TOML: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("no instruments configured")]
    Empty,
    #[error("too many instruments (at most 65535)")]
    TooMany,
    #[error("instrument {symbol:?}: {problem}")]
    Invalid { symbol: String, problem: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    instrument: Vec<InstrumentSpec>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Limits {
    max_ticks: Ticks,
    max_lots: Lots,
}

/// The table of instruments an engine trades, indexed by [`InstrumentId`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Instruments {
    specs: Vec<InstrumentSpec>,
    symbols: Vec<Symbol>,
    limits: Vec<Limits>,
    /// Ordered, so the serialized table is canonical.
    by_symbol: BTreeMap<Symbol, InstrumentId>,
}

fn invalid(spec: &InstrumentSpec, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        symbol: spec.symbol.clone(),
        problem: problem.into(),
    }
}

/// `value / unit` as an integer, if `value` is an exact positive multiple of `unit` within
/// [`MAX_UNITS`].
fn units(value: Decimal, unit: Decimal) -> Option<u64> {
    if value <= Decimal::ZERO || !value.checked_rem(unit)?.is_zero() {
        return None;
    }
    let n = value.checked_div(unit)?.to_u64()?;
    (n <= MAX_UNITS).then_some(n)
}

impl Instruments {
    /// Validates the specs and builds the table. Order of `specs` defines the ids.
    pub fn new(specs: Vec<InstrumentSpec>) -> Result<Self, ConfigError> {
        if specs.is_empty() {
            return Err(ConfigError::Empty);
        }
        if specs.len() > u16::MAX as usize {
            return Err(ConfigError::TooMany);
        }
        let mut by_symbol = BTreeMap::new();
        let mut symbols = Vec::with_capacity(specs.len());
        let mut limits = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            let symbol = FixedStr::new(&spec.symbol).map_err(|e| invalid(spec, e.to_string()))?;
            if spec.tick_size <= Decimal::ZERO || spec.lot_size <= Decimal::ZERO {
                return Err(invalid(spec, "tick_size and lot_size must be positive"));
            }
            let max_ticks = units(spec.max_price, spec.tick_size).ok_or_else(|| {
                invalid(
                    spec,
                    "max_price must be a positive multiple of tick_size (≤ 2^48 ticks)",
                )
            })?;
            let max_lots = units(spec.max_quantity, spec.lot_size).ok_or_else(|| {
                invalid(
                    spec,
                    "max_quantity must be a positive multiple of lot_size (≤ 2^48 lots)",
                )
            })?;
            if by_symbol.insert(symbol, InstrumentId(i as u16)).is_some() {
                return Err(invalid(spec, "duplicate symbol"));
            }
            symbols.push(symbol);
            limits.push(Limits {
                max_ticks: max_ticks as Ticks,
                max_lots,
            });
        }
        Ok(Instruments {
            specs,
            symbols,
            limits,
            by_symbol,
        })
    }

    /// Parses the `[[instrument]]` tables of a TOML document.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        let file: ConfigFile = toml::from_str(text)?;
        Self::new(file.instrument)
    }

    /// Number of instruments.
    pub fn len(&self) -> usize {
        self.specs.len()
    }

    /// True when the table is empty (never, for a table built by [`Instruments::new`]).
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// All instrument ids, in configuration order.
    pub fn ids(&self) -> impl Iterator<Item = InstrumentId> + '_ {
        (0..self.specs.len()).map(|i| InstrumentId(i as u16))
    }

    /// Looks an instrument up by symbol.
    pub fn id(&self, symbol: &str) -> Option<InstrumentId> {
        let symbol = FixedStr::new(symbol).ok()?;
        self.by_symbol.get(&symbol).copied()
    }

    /// Looks an instrument up by its fixed-size symbol.
    pub fn id_of(&self, symbol: Symbol) -> Option<InstrumentId> {
        self.by_symbol.get(&symbol).copied()
    }

    /// The spec of `id`. Panics on an id not from this table.
    pub fn spec(&self, id: InstrumentId) -> &InstrumentSpec {
        &self.specs[id.0 as usize]
    }

    /// The symbol of `id`. Panics on an id not from this table.
    pub fn symbol(&self, id: InstrumentId) -> Symbol {
        self.symbols[id.0 as usize]
    }

    /// True when `id` belongs to this table.
    pub fn contains(&self, id: InstrumentId) -> bool {
        (id.0 as usize) < self.specs.len()
    }

    /// Converts a decimal limit price to ticks, rejecting zero/negative, off-tick and too-large
    /// prices.
    pub fn price_to_ticks(&self, id: InstrumentId, price: Decimal) -> Result<Ticks, RejectReason> {
        let spec = self.spec(id);
        if price <= Decimal::ZERO {
            return Err(RejectReason::PriceNotPositive);
        }
        if price > spec.max_price {
            return Err(RejectReason::PriceTooLarge);
        }
        match units(price, spec.tick_size) {
            Some(t) => Ok(t as Ticks),
            None => Err(RejectReason::PriceOffTick),
        }
    }

    /// Converts a decimal quantity to lots, rejecting zero/negative, off-lot and too-large sizes.
    pub fn qty_to_lots(&self, id: InstrumentId, qty: Decimal) -> Result<Lots, RejectReason> {
        let spec = self.spec(id);
        if qty <= Decimal::ZERO {
            return Err(RejectReason::QuantityNotPositive);
        }
        if qty > spec.max_quantity {
            return Err(RejectReason::QuantityTooLarge);
        }
        units(qty, spec.lot_size).ok_or(RejectReason::QuantityOffLot)
    }

    /// Checks an integer price against the instrument's limits.
    #[inline]
    pub fn check_ticks(&self, id: InstrumentId, ticks: Ticks) -> Result<(), RejectReason> {
        if ticks <= 0 {
            Err(RejectReason::PriceNotPositive)
        } else if ticks > self.limits[id.0 as usize].max_ticks {
            Err(RejectReason::PriceTooLarge)
        } else {
            Ok(())
        }
    }

    /// Checks an integer quantity against the instrument's limits.
    #[inline]
    pub fn check_lots(&self, id: InstrumentId, lots: Lots) -> Result<(), RejectReason> {
        if lots == 0 {
            Err(RejectReason::QuantityNotPositive)
        } else if lots > self.limits[id.0 as usize].max_lots {
            Err(RejectReason::QuantityTooLarge)
        } else {
            Ok(())
        }
    }

    /// Ticks back to a decimal price (exact).
    pub fn ticks_to_price(&self, id: InstrumentId, ticks: Ticks) -> Decimal {
        Decimal::from(ticks) * self.spec(id).tick_size
    }

    /// Lots back to a decimal quantity (exact).
    pub fn lots_to_qty(&self, id: InstrumentId, lots: Lots) -> Decimal {
        Decimal::from(lots) * self.spec(id).lot_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn table() -> Instruments {
        Instruments::from_toml_str(
            r#"
            [[instrument]]
            symbol = "TCS"
            tick_size = "0.05"
            lot_size = "1"
            max_price = "100000"
            max_quantity = "1000000"
            [[instrument]]
            symbol = "BTC"
            tick_size = "0.5"
            lot_size = "0.001"
            max_price = "10000000"
            max_quantity = "1000"
            "#,
        )
        .unwrap()
    }

    #[test]
    fn converts_valid_prices_and_quantities_exactly() {
        let t = table();
        let tcs = t.id("TCS").unwrap();
        let btc = t.id("BTC").unwrap();
        assert_eq!(t.price_to_ticks(tcs, d("15.0")), Ok(300));
        assert_eq!(t.price_to_ticks(tcs, d("15.05")), Ok(301));
        assert_eq!(t.qty_to_lots(tcs, d("5.0")), Ok(5));
        assert_eq!(t.qty_to_lots(btc, d("0.123")), Ok(123));
        assert_eq!(t.ticks_to_price(tcs, 301), d("15.05"));
        assert_eq!(t.lots_to_qty(btc, 123), d("0.123"));
    }

    #[test]
    fn rejects_bad_prices_and_quantities_with_specific_reasons() {
        let t = table();
        let tcs = t.id("TCS").unwrap();
        assert_eq!(
            t.price_to_ticks(tcs, d("15.03")),
            Err(RejectReason::PriceOffTick)
        );
        assert_eq!(
            t.price_to_ticks(tcs, d("0")),
            Err(RejectReason::PriceNotPositive)
        );
        assert_eq!(
            t.price_to_ticks(tcs, d("-1")),
            Err(RejectReason::PriceNotPositive)
        );
        assert_eq!(
            t.price_to_ticks(tcs, d("100000.05")),
            Err(RejectReason::PriceTooLarge)
        );
        assert_eq!(
            t.price_to_ticks(tcs, Decimal::MAX),
            Err(RejectReason::PriceTooLarge)
        );
        assert_eq!(
            t.price_to_ticks(tcs, d("0.0000000000000000000000000001")),
            Err(RejectReason::PriceOffTick)
        );
        assert_eq!(
            t.qty_to_lots(tcs, d("0.5")),
            Err(RejectReason::QuantityOffLot)
        );
        assert_eq!(
            t.qty_to_lots(tcs, d("0")),
            Err(RejectReason::QuantityNotPositive)
        );
        assert_eq!(
            t.qty_to_lots(tcs, d("-3")),
            Err(RejectReason::QuantityNotPositive)
        );
        assert_eq!(
            t.qty_to_lots(tcs, d("1000001")),
            Err(RejectReason::QuantityTooLarge)
        );
        assert_eq!(
            t.qty_to_lots(tcs, Decimal::MIN),
            Err(RejectReason::QuantityNotPositive)
        );
        assert!(t.id("NOPE").is_none());
        assert!(t.id("WAY_TOO_LONG_SYMBOL_NAME").is_none());
    }

    #[test]
    fn rejects_bad_config() {
        let bad_tick = r#"[[instrument]]
            symbol = "X"
            tick_size = "0"
            lot_size = "1"
            max_price = "10"
            max_quantity = "10""#;
        assert!(Instruments::from_toml_str(bad_tick).is_err());
        let off_tick_max = r#"[[instrument]]
            symbol = "X"
            tick_size = "0.3"
            lot_size = "1"
            max_price = "10"
            max_quantity = "10""#;
        assert!(Instruments::from_toml_str(off_tick_max).is_err());
        let dup = r#"[[instrument]]
            symbol = "X"
            tick_size = "1"
            lot_size = "1"
            max_price = "10"
            max_quantity = "10"
            [[instrument]]
            symbol = "X"
            tick_size = "1"
            lot_size = "1"
            max_price = "10"
            max_quantity = "10""#;
        assert!(Instruments::from_toml_str(dup).is_err());
        assert!(Instruments::from_toml_str("instrument = []").is_err());
        assert!(Instruments::from_toml_str("garbage =").is_err());
    }

    #[test]
    fn shipped_instrument_file_is_valid() {
        let text = include_str!("../../../data/instruments.toml");
        let t = Instruments::from_toml_str(text).unwrap();
        assert!(t.len() >= 4);
        let tcs = t.id("TCS").expect("TCS is configured");
        // The seed order from the product brief must be valid as is.
        assert_eq!(t.price_to_ticks(tcs, d("15.0")).map(|_| ()), Ok(()));
        assert_eq!(t.qty_to_lots(tcs, d("5.0")).map(|_| ()), Ok(()));
    }
}
