//! Exact rationals for publishing P&L: a value is carried as `num / den` with 256-bit integers
//! (every product of two 128-bit numbers fits) and becomes a `Decimal` once, at publication,
//! rounded half to even at the caller's number of decimal places ([`Ratio::round`]).
//!
//! Every operation is checked: a result that does not fit 256 bits is `None`, never a wrapped
//! value.

use ethnum::I256;
use rust_decimal::Decimal;

/// An exact rational `num / den`, `den > 0` (not necessarily in lowest terms).
#[derive(Clone, Copy, Debug)]
pub struct Ratio {
    num: I256,
    den: I256,
}

/// `10^exp` as a 256-bit integer (`None` past 10^76).
fn pow10(exp: u32) -> Option<I256> {
    I256::new(10).checked_pow(exp)
}

impl Ratio {
    pub const ZERO: Ratio = Ratio {
        num: I256::ZERO,
        den: I256::ONE,
    };

    /// `num / den`. Panics if `den <= 0`.
    pub fn new(num: i128, den: i128) -> Ratio {
        assert!(den > 0, "denominator {den} must be positive");
        Ratio {
            num: I256::new(num),
            den: I256::new(den),
        }
    }

    /// The integer `n`.
    pub fn int(n: i128) -> Ratio {
        Ratio::new(n, 1)
    }

    /// The exact value of a decimal.
    pub fn from_decimal(d: Decimal) -> Ratio {
        Ratio {
            num: I256::new(d.mantissa()),
            den: pow10(d.scale()).expect("a decimal's scale is at most 28"),
        }
    }

    pub fn checked_add(self, other: Ratio) -> Option<Ratio> {
        if self.den == other.den {
            return Some(Ratio {
                num: self.num.checked_add(other.num)?,
                den: self.den,
            });
        }
        Some(Ratio {
            num: self
                .num
                .checked_mul(other.den)?
                .checked_add(other.num.checked_mul(self.den)?)?,
            den: self.den.checked_mul(other.den)?,
        })
    }

    pub fn checked_neg(self) -> Option<Ratio> {
        Some(Ratio {
            num: self.num.checked_neg()?,
            den: self.den,
        })
    }

    pub fn checked_sub(self, other: Ratio) -> Option<Ratio> {
        self.checked_add(other.checked_neg()?)
    }

    pub fn checked_mul(self, other: Ratio) -> Option<Ratio> {
        Some(Ratio {
            num: self.num.checked_mul(other.num)?,
            den: self.den.checked_mul(other.den)?,
        })
    }

    /// The same value in lowest terms.
    pub fn reduced(self) -> Ratio {
        let g = gcd_u256(self.num.unsigned_abs(), self.den.unsigned_abs());
        if g <= 1 {
            return self;
        }
        let g = g.as_i256();
        Ratio {
            num: self.num / g,
            den: self.den / g,
        }
    }

    /// `self × factor`, rounded half to even at `dp` decimal places: the exact value rounded
    /// once. `None` if an intermediate does not fit 256 bits or the result does not fit a
    /// `Decimal` (96-bit mantissa), or if `dp > 28`.
    pub fn round(self, factor: Decimal, dp: u32) -> Option<Decimal> {
        if dp > 28 {
            return None;
        }
        // self × factor × 10^dp = num × mantissa × 10^dp / (den × 10^scale)
        let mut a = self
            .num
            .checked_mul(I256::new(factor.mantissa()))?
            .checked_mul(pow10(dp)?)?;
        let mut b = self.den.checked_mul(pow10(factor.scale())?)?;
        if b < 0 {
            (a, b) = (a.checked_neg()?, b.checked_neg()?);
        }
        let q = div_round_half_even(a, b)?;
        let q = i128::try_from(q).ok()?;
        Decimal::try_from_i128_with_scale(q, dp).ok()
    }

    /// The exact value as a decimal, if it has one with at most 28 decimal places (tests and
    /// diagnostics).
    pub fn to_decimal(self) -> Option<Decimal> {
        let exact = self.round(Decimal::ONE, 28)?;
        (Ratio::from_decimal(exact) == self).then_some(exact)
    }
}

/// `a / b` rounded half to even (`b > 0`).
fn div_round_half_even(a: I256, b: I256) -> Option<I256> {
    debug_assert!(b > 0);
    let q = a.div_euclid(b);
    let r = a.rem_euclid(b); // 0 <= r < b, a = q b + r
    let twice = r.checked_mul(I256::new(2))?;
    let up = twice > b || (twice == b && q & I256::ONE == I256::ONE);
    if up {
        q.checked_add(I256::ONE)
    } else {
        Some(q)
    }
}

/// Equal values (whatever their denominators). Panics only if the cross products overflow 256
/// bits, which the values this crate builds cannot reach.
impl PartialEq for Ratio {
    fn eq(&self, other: &Ratio) -> bool {
        let l = self.num.checked_mul(other.den);
        let r = other.num.checked_mul(self.den);
        l.zip(r).map(|(l, r)| l == r).expect("comparable ratios")
    }
}
impl Eq for Ratio {}

impl From<i64> for Ratio {
    fn from(n: i64) -> Ratio {
        Ratio::int(n as i128)
    }
}

impl From<Decimal> for Ratio {
    fn from(d: Decimal) -> Ratio {
        Ratio::from_decimal(d)
    }
}

/// Greatest common divisor (binary), of magnitudes; `gcd(0, 0) = 0`.
pub(crate) fn gcd_u128(mut a: u128, mut b: u128) -> u128 {
    if a == 0 {
        return b;
    }
    if b == 0 {
        return a;
    }
    let shift = (a | b).trailing_zeros();
    a >>= a.trailing_zeros();
    loop {
        b >>= b.trailing_zeros();
        if a > b {
            std::mem::swap(&mut a, &mut b);
        }
        b -= a;
        if b == 0 {
            return a << shift;
        }
    }
}

/// [`gcd_u128`] of 256-bit magnitudes.
pub(crate) fn gcd_u256(a: ethnum::U256, b: ethnum::U256) -> ethnum::U256 {
    let (mut a, mut b) = (a, b);
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::RoundingStrategy;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn rounding_matches_decimal_half_even_on_exact_values() {
        let factors = [d("1"), d("0.01"), d("0.5"), d("0.0001"), d("25")];
        for num in -2_000i128..2_000 {
            for den in [1i128, 2, 3, 7, 8, 16, 1000, 1024, 3125] {
                let r = Ratio::new(num * 37, den);
                for f in factors {
                    let got = r.round(f, 6).unwrap();
                    if let Some(exact) = r.checked_mul(Ratio::from(f)).unwrap().to_decimal() {
                        let want =
                            exact.round_dp_with_strategy(6, RoundingStrategy::MidpointNearestEven);
                        assert_eq!(got, want, "{num}×37/{den} × {f}");
                    }
                }
            }
        }
        // Half to even at the 6th place, on both signs.
        assert_eq!(
            Ratio::new(5, 10_000_000).round(Decimal::ONE, 6),
            Some(d("0"))
        );
        assert_eq!(
            Ratio::new(15, 10_000_000).round(Decimal::ONE, 6),
            Some(d("0.000002"))
        );
        assert_eq!(
            Ratio::new(-15, 10_000_000).round(Decimal::ONE, 6),
            Some(d("-0.000002"))
        );
        assert_eq!(
            Ratio::new(-25, 10_000_000).round(Decimal::ONE, 6),
            Some(d("-0.000002"))
        );
        assert_eq!(Ratio::new(1, 3).round(Decimal::ONE, 6), Some(d("0.333333")));
        assert_eq!(
            Ratio::new(-2, 3).round(Decimal::ONE, 6),
            Some(d("-0.666667"))
        );
    }

    #[test]
    fn out_of_range_is_none_not_wrapped() {
        let big = Ratio::int(i128::MAX);
        assert!(big.round(Decimal::ONE, 6).is_none(), "beyond a Decimal");
        let huge = big.checked_mul(big).unwrap();
        assert!(huge.checked_mul(Ratio::int(4)).is_none());
        let twice = huge.checked_add(huge).unwrap();
        assert!(twice.checked_add(huge).is_none());
    }

    #[test]
    fn gcds() {
        assert_eq!(gcd_u128(0, 0), 0);
        assert_eq!(gcd_u128(12, 0), 12);
        assert_eq!(gcd_u128(12, 18), 6);
        assert_eq!(gcd_u128(1 << 100, 3 << 90), 1 << 90);
        let u = |x: u128| ethnum::U256::new(x);
        assert_eq!(gcd_u256(u(12), u(18)), u(6));
    }
}
