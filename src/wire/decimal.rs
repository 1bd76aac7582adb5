//! Decimals on the wire and the money rounding rule.
//!
//! Prices and quantities travel as JSON numbers whose text is the exact decimal (`15.05`, never
//! `15.050000000000001`): they are written from `rust_decimal` and read back from the raw number
//! text, never through `f64`. Reading also accepts them as strings (`"15.05"`).
//!
//! **Money rounding rule** (one, named, used by every job and report): money that is not an exact
//! tick × lot product — P&L, average prices, VWAP, moving averages — is published rounded to
//! [`MONEY_DP`] decimal places, half to even ([`money`]), without trailing zeros.

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Deserializer, Serializer};
use serde_json::value::RawValue;
use std::str::FromStr;

/// Decimal places of published money that is not an exact price (P&L, averages, VWAP).
pub const MONEY_DP: u32 = 6;

/// The money rounding rule: [`MONEY_DP`] places, half to even (banker's rounding, unbiased over
/// many values), trailing zeros dropped (`1.500000` → `1.5`).
pub fn money(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(MONEY_DP, RoundingStrategy::MidpointNearestEven)
        .normalize()
}

/// The money rounding rule applied once to an exact value: `exact × factor` (e.g. ticks × lots ×
/// the instrument's money per tick × lot) rounded to [`MONEY_DP`] places, half to even, trailing
/// zeros dropped — what [`money`] gives for the same value when it is a `Decimal`. `None` if the
/// result does not fit a `Decimal`.
pub fn money_exact(exact: kappa_analytics::Ratio, factor: Decimal) -> Option<Decimal> {
    exact.round(factor, MONEY_DP).map(|d| d.normalize())
}

/// Writes `units × step` — a price from ticks and tick size, a quantity from lots and lot size —
/// into `out` exactly as `Decimal`'s `Display` writes the product `Decimal::from(units) * step`
/// (the wire's text of prices and quantities; tested), with integer arithmetic instead of the
/// formatter: the match maker writes three to six of these per order.
pub fn write_units<U: Into<i128> + Into<Decimal> + Copy>(
    units: U,
    step: Decimal,
    out: &mut Vec<u8>,
) {
    match Into::<i128>::into(units).checked_mul(step.mantissa()) {
        // `Decimal` multiplication returns a product of zero as plain `0`.
        Some(0) => out.push(b'0'),
        // Otherwise it keeps the product exact when its mantissa fits 96 bits, at the step's
        // scale.
        Some(m) if m.unsigned_abs() < 1 << 96 => write_scaled(m, step.scale(), out),
        _ => {
            use std::io::Write as _;
            // Writing to a Vec cannot fail.
            let _ = write!(out, "{}", Into::<Decimal>::into(units) * step);
        }
    }
}

/// `m × 10^-scale` with exactly `scale` fraction digits.
fn write_scaled(m: i128, scale: u32, out: &mut Vec<u8>) {
    if m < 0 {
        out.push(b'-');
    }
    let abs = m.unsigned_abs();
    let unit = 10u128.pow(scale);
    let mut buf = itoa::Buffer::new();
    out.extend_from_slice(buf.format(abs / unit).as_bytes());
    if scale > 0 {
        out.push(b'.');
        let fraction = buf.format(abs % unit);
        out.resize(out.len() + scale as usize - fraction.len(), b'0');
        out.extend_from_slice(fraction.as_bytes());
    }
}

#[cfg(test)]
mod units_tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Byte for byte what `Decimal`'s `Display` writes for the product, over random steps (tick
    /// and lot sizes of every scale), units of every size and sign, and the overflow fallback.
    #[test]
    fn units_are_written_as_the_decimal_product_displays() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(17);
        let mut out = Vec::new();
        let mut check = |units: i64, lots: u64, step: Decimal| {
            out.clear();
            write_units(units, step, &mut out);
            assert_eq!(
                String::from_utf8_lossy(&out),
                (Decimal::from(units) * step).to_string()
            );
            out.clear();
            write_units(lots, step, &mut out);
            assert_eq!(
                String::from_utf8_lossy(&out),
                (Decimal::from(lots) * step).to_string()
            );
        };
        for _ in 0..200_000 {
            let step = Decimal::new(rng.random_range(1..100_000), rng.random_range(0..=12));
            let units = match rng.random_range(0..4) {
                0 => rng.random_range(-1_000..1_000),
                1 => rng.random_range(-10_000_000..10_000_000),
                2 => rng.random(),
                _ => [0, 1, -1, i64::MAX, i64::MIN][rng.random_range(0..5)],
            };
            let lots = match rng.random_range(0..3) {
                0 => rng.random_range(0..10_000),
                1 => rng.random(),
                _ => u64::MAX,
            };
            check(units, lots, step);
        }
        for step in [
            "0.05",
            "1",
            "0.0001",
            "100",
            "1.50",
            "0.000000000000000000000000001",
        ] {
            for units in [0, 1, -1, 7, 300, -12_345, i64::MAX, i64::MIN] {
                check(units, units.unsigned_abs(), step.parse().unwrap());
            }
        }
    }
}

/// Parses the exact decimal text of a JSON number (or numeric string).
pub fn decimal_from_json(raw: &str) -> Option<Decimal> {
    let text = raw.trim();
    let text = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    if text.is_empty() || text == "null" {
        return None;
    }
    if let Some(d) = plain_decimal(text) {
        return Some(d);
    }
    Decimal::from_str(text)
        .or_else(|_| Decimal::from_scientific(text))
        .ok()
}

/// `-?[0-9]+(\.[0-9]+)?` with at most 18 digits, read straight into mantissa and scale — the
/// same value and scale as `Decimal::from_str` (tested), without its general parser: prices and
/// quantities on the wire are almost always this short.
fn plain_decimal(text: &str) -> Option<Decimal> {
    let (negative, digits) = match text.as_bytes() {
        [b'-', rest @ ..] => (true, rest),
        rest => (false, rest),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let (mut mantissa, mut scale, mut seen_point, mut count) = (0i64, 0u32, false, 0);
    for (i, &b) in digits.iter().enumerate() {
        match b {
            b'0'..=b'9' => {
                if count == 18 {
                    return None;
                }
                mantissa = mantissa * 10 + i64::from(b - b'0');
                count += 1;
                scale += u32::from(seen_point);
            }
            // A point between digits, once.
            b'.' if !seen_point && i > 0 && i + 1 < digits.len() => seen_point = true,
            _ => return None,
        }
    }
    Some(Decimal::new(
        if negative { -mantissa } else { mantissa },
        scale,
    ))
}

/// Serde helpers writing a `Decimal` as a JSON number with its exact text, and reading it back
/// from a number or a string.
pub mod json_decimal {
    use super::*;

    /// serde_json's marker for "write this text verbatim as a JSON value" (what `RawValue`
    /// serializes through); lets a decimal be written from a stack buffer without allocating.
    const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

    struct StackBuf {
        buf: [u8; 64],
        len: usize,
    }

    impl std::fmt::Write for StackBuf {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            let end = self.len + s.len();
            self.buf
                .get_mut(self.len..end)
                .ok_or(std::fmt::Error)?
                .copy_from_slice(s.as_bytes());
            self.len = end;
            Ok(())
        }
    }

    pub fn serialize<S: Serializer>(d: &Decimal, s: S) -> Result<S::Ok, S::Error> {
        use std::fmt::Write;
        let mut b = StackBuf {
            buf: [0; 64],
            len: 0,
        };
        write!(b, "{d}").map_err(serde::ser::Error::custom)?;
        let text = std::str::from_utf8(&b.buf[..b.len]).map_err(serde::ser::Error::custom)?;
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct(RAW_VALUE_TOKEN, 1)?;
        st.serialize_field(RAW_VALUE_TOKEN, text)?;
        st.end()
    }

    /// Reads the number's text borrowed from the input (no allocation): works with serde_json's
    /// `from_slice`/`from_str`, which is how every message is read.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
        let raw: &RawValue = Deserialize::deserialize(d)?;
        decimal_from_json(raw.get())
            .ok_or_else(|| serde::de::Error::custom(format!("not a decimal: {}", raw.get())))
    }

    /// The same for `Option<Decimal>` (absent or `null` = `None`).
    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(d: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => super::serialize(d, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
            let raw: Option<&RawValue> = Deserialize::deserialize(d)?;
            match raw {
                None => Ok(None),
                Some(raw) => decimal_from_json(raw.get()).map(Some).ok_or_else(|| {
                    serde::de::Error::custom(format!("not a decimal: {}", raw.get()))
                }),
            }
        }
    }
}
