//! The integer average-cost accounting of [`Position`] against straightforward references: an
//! exact rational one (textbook average cost, realized P&L accumulated fill by fill) and the
//! `Decimal` accounting this crate used before (published values must be unchanged wherever it
//! was exact). Plus the overflow behaviour.

use kappa_analytics::{FillError, PnlEngine, Position, Ratio, TradeRow, WindowSpec, AVG_DEN_MAX};
use proptest::prelude::*;
use rust_decimal::Decimal;

/// Textbook average cost in exact rationals (256-bit, kept in lowest terms).
#[derive(Clone, Debug)]
struct Exact {
    quantity: i64,
    avg: Ratio,
    realized: Ratio,
}

impl Exact {
    fn new() -> Self {
        Exact {
            quantity: 0,
            avg: Ratio::ZERO,
            realized: Ratio::ZERO,
        }
    }

    /// `None` if the reference itself leaves 256 bits.
    fn fill(&mut self, buy: bool, qty: i64, price: i64) -> Option<()> {
        let signed = if buy { qty } else { -qty };
        let p = Ratio::from(price);
        if self.quantity == 0 || (self.quantity > 0) == buy {
            let held = Ratio::from(self.quantity.abs());
            let cost = self
                .avg
                .checked_mul(held)?
                .checked_add(p.checked_mul(Ratio::from(qty))?)?;
            let total = (self.quantity.abs() + qty) as i128;
            self.avg = cost.checked_mul(Ratio::new(1, total))?.reduced();
            self.quantity += signed;
            return Some(());
        }
        let closed = qty.min(self.quantity.abs());
        let gain =
            Ratio::from(closed * self.quantity.signum()).checked_mul(p.checked_sub(self.avg)?)?;
        self.realized = self.realized.checked_add(gain)?.reduced();
        self.quantity += if buy { closed } else { -closed };
        if self.quantity == 0 {
            self.avg = Ratio::ZERO;
        }
        if qty > closed {
            self.quantity = if buy { qty - closed } else { closed - qty };
            self.avg = p;
        }
        Some(())
    }
}

/// The `Decimal` accounting as it was (a 96-bit division per fill for the average).
#[derive(Clone, Debug, Default)]
struct OldDecimal {
    quantity: i64,
    avg: Decimal,
    realized: Decimal,
}

impl OldDecimal {
    fn fill(&mut self, buy: bool, qty: i64, price: i64) {
        let signed = if buy { qty } else { -qty };
        let price_d = Decimal::from(price);
        if self.quantity == 0 || (self.quantity > 0) == buy {
            let held = Decimal::from(self.quantity.abs());
            self.avg =
                (self.avg * held + price_d * Decimal::from(qty)) / (held + Decimal::from(qty));
            self.quantity += signed;
            return;
        }
        let closed = qty.min(self.quantity.abs());
        let direction = Decimal::from(self.quantity.signum());
        self.realized += Decimal::from(closed) * (price_d - self.avg) * direction;
        self.quantity += if buy { closed } else { -closed };
        let remainder = qty - closed;
        if self.quantity == 0 {
            self.avg = Decimal::ZERO;
        }
        if remainder > 0 {
            self.quantity = if buy { remainder } else { -remainder };
            self.avg = price_d;
        }
    }
}

/// `|a − b| × 10^19` (rounded), as a decimal.
fn gap(a: Ratio, b: Ratio) -> Decimal {
    a.checked_sub(b)
        .unwrap()
        .round(Decimal::from(AVG_DEN_MAX as u64), 0)
        .unwrap()
        .abs()
}

fn fills(
    max_qty: i64,
    prices: std::ops::Range<i64>,
) -> impl Strategy<Value = Vec<(bool, i64, i64)>> {
    prop::collection::vec((any::<bool>(), 1..max_qty, prices), 1..60)
}

/// Checks `p` against the exact reference after every fill: equal while the average never had to
/// be rounded, within the documented bound after.
fn check(seq: &[(bool, i64, i64)]) -> Result<(), TestCaseError> {
    let mut p = Position::default();
    let mut want = Exact::new();
    for &(buy, qty, price) in seq {
        p.fill(buy, qty, price).unwrap();
        if want.fill(buy, qty, price).is_none() {
            return Ok(()); // beyond the reference's own range
        }
        prop_assert_eq!(p.quantity, want.quantity);
        let mark = price + 3;
        let Some((unrealized, total)) = want
            .unrealized(mark)
            .and_then(|u| Some((u, want.realized.checked_add(u)?.reduced())))
        else {
            return Ok(());
        };
        // The total is an exact integer whatever happened to the average.
        prop_assert_eq!(Ratio::int(p.total(mark).unwrap()), total);
        if p.avg_roundings == 0 {
            prop_assert_eq!(p.avg_price(), want.avg);
            prop_assert_eq!(p.realized(), want.realized);
            prop_assert_eq!(p.unrealized(mark).unwrap(), unrealized);
        } else {
            // Each rounding moves the average by at most half a 10^-19 tick, and a later average
            // is a weighted mean that only damps earlier errors: the average is off by at most
            // `roundings` × 10^-19 and the realized P&L by that times the lots traded.
            let r = Decimal::from(p.avg_roundings);
            prop_assert!(
                gap(p.avg_price(), want.avg) <= r,
                "average {:?} vs {:?}",
                p.avg_price(),
                want.avg
            );
            prop_assert!(gap(p.realized(), want.realized) <= r * Decimal::from(p.volume));
        }
    }
    Ok(())
}

impl Exact {
    fn unrealized(&self, mark: i64) -> Option<Ratio> {
        Ratio::from(self.quantity).checked_mul(Ratio::from(mark).checked_sub(self.avg)?)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// Small prices and quantities: many flips through zero, many exact fractions.
    #[test]
    fn integer_accounting_matches_exact_rationals(seq in fills(40, 90..110)) {
        check(&seq)?;
    }

    /// Wide prices and quantities (up to 2^40): the 128/256-bit paths.
    #[test]
    fn integer_accounting_matches_exact_rationals_at_scale(seq in fills(1 << 40, 1..(1 << 40))) {
        check(&seq)?;
    }
}

#[test]
fn long_random_walks_round_the_average_within_the_bound() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let seq: Vec<(bool, i64, i64)> = (0..400)
        .map(|_| {
            (
                rng.random_bool(0.5),
                rng.random_range(1..100),
                rng.random_range(9_000..11_000),
            )
        })
        .collect();
    let mut p = Position::default();
    for &(buy, qty, price) in &seq {
        p.fill(buy, qty, price).unwrap();
    }
    assert!(p.avg_roundings > 0, "a long walk reaches the grid");
    // The reference may leave 256 bits on so long a walk: check the prefix it can follow.
    check(&seq).unwrap();
}

/// Published values (6 places, half to even, after the money factor) are the ones the `Decimal`
/// accounting gave wherever its figures were exact; the differences elsewhere are counted.
#[test]
fn published_values_match_the_decimal_accounting_where_it_was_exact() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let unit = Decimal::new(1, 2);
    let (mut compared, mut inexact, mut differ) = (0, 0, 0);
    for _ in 0..300 {
        let (mut p, mut old, mut want) = (Position::default(), OldDecimal::default(), Exact::new());
        for _ in 0..40 {
            let (buy, qty, price) = (
                rng.random_bool(0.5),
                rng.random_range(1..30),
                rng.random_range(95..105),
            );
            p.fill(buy, qty, price).unwrap();
            old.fill(buy, qty, price);
            if want.fill(buy, qty, price).is_none() {
                break;
            }
            let old_exact =
                Ratio::from(old.avg) == want.avg && Ratio::from(old.realized) == want.realized;
            let money = |d: Decimal| {
                (d * unit)
                    .round_dp_with_strategy(6, rust_decimal::RoundingStrategy::MidpointNearestEven)
            };
            let new_realized = p.realized().round(unit, 6).unwrap();
            let new_avg = p.avg_price().round(unit, 6).unwrap();
            compared += 1;
            if old_exact {
                assert_eq!(new_realized, money(old.realized));
                assert_eq!(new_avg, money(old.avg));
            } else {
                inexact += 1;
                if new_realized != money(old.realized) || new_avg != money(old.avg) {
                    if differ == 0 {
                        eprintln!(
                            "e.g. exact realized {:?} avg {:?}: Decimal realized {} avg {}, published {} / {} (was {} / {})",
                            want.realized, want.avg, old.realized, old.avg,
                            new_realized, new_avg, money(old.realized), money(old.avg)
                        );
                    }
                    differ += 1;
                }
            }
        }
    }
    eprintln!("{compared} states compared, {inexact} where the Decimal figures were rounded, {differ} published differently");
    assert!(inexact > 0 && compared > inexact);
}

#[test]
fn overflow_is_an_error_and_leaves_the_position_unchanged() {
    // Lots beyond i64 (|position| <= volume, so the volume is the one that overflows).
    let mut p = Position::default();
    p.fill(true, i64::MAX, 1).unwrap();
    let before = p;
    assert_eq!(p.fill(true, 1, 1), Err(FillError::Overflow("volume")));
    assert_eq!(p, before);
    // Cash and notional are bounded by volume × max |price| <= 2^126: the volume (an i64)
    // overflows first, so they never do.
    let mut p = Position::default();
    p.fill(false, i64::MAX / 2, i64::MAX).unwrap();
    p.fill(true, i64::MAX / 2, i64::MIN).unwrap();
    let before = p;
    assert_eq!(
        p.fill(false, 2, i64::MAX),
        Err(FillError::Overflow("volume"))
    );
    assert_eq!(p, before);
    assert_eq!(
        p.cash(),
        (i64::MAX / 2) as i128 * (i64::MAX as i128 - i64::MIN as i128)
    );
    assert_eq!(
        p.total(i64::MIN),
        Some(p.cash() + p.quantity as i128 * i64::MIN as i128)
    );
    // Negative quantities are refused.
    assert_eq!(p.fill(true, -1, 1), Err(FillError::NegativeQuantity(-1)));
    // Extreme but valid: the average stays exact (or within the grid) and in range.
    let mut p = Position::default();
    p.fill(true, 3, i64::MAX).unwrap();
    p.fill(true, 7, i64::MIN).unwrap();
    p.fill(false, 4, 0).unwrap();
    p.fill(true, 1_000_003, i64::MAX).unwrap();
    assert_eq!(p.quantity, 1_000_009);
    assert!(p.avg_price().round(Decimal::ONE, 6).is_some());
    let mut p = Position::default();
    p.fill(true, 1 << 40, i64::MAX).unwrap();
    p.fill(false, 1 << 40, i64::MIN).unwrap();
    assert_eq!(
        p.realized(),
        Ratio::int(-(1 << 40) * (1i128 << 64) + (1 << 40))
    );
    assert!(
        p.realized().round(Decimal::ONE, 0).is_none(),
        "beyond a Decimal: None, not wrapped"
    );
    // The engine reports an overflow as an error.
    let mut e = PnlEngine::new(
        WindowSpec {
            length_ms: 1_000,
            lateness_ms: 0,
        },
        vec![Decimal::ONE],
    );
    let t = |q| TradeRow {
        instrument: 0,
        ts_ms: 1,
        price: 1,
        quantity: q,
        buyer: 1,
        seller: 2,
    };
    e.push(&[t(i64::MAX)]).unwrap();
    let err = e.push(&[t(1)]).unwrap_err();
    assert!(err.to_string().contains("overflows"), "{err}");
}
