//! Snapshots of the engines' state through bincode (a non-self-describing format): an engine
//! serialized between two micro-batches and deserialized into a fresh one must continue exactly as
//! if it had never stopped, and a snapshot must re-serialize to the same bytes.

use kappa_analytics::{
    BarEngine, BarsOutput, Clock, PnlEngine, PnlOutput, Position, TradeRow, WindowSpec,
};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use serde::{de::DeserializeOwned, Serialize};
use std::collections::BTreeSet;
use std::str::FromStr;

/// Snapshots `engine` with bincode and restores it into a fresh value, checking on the way that the
/// restored value re-serializes to the same bytes.
fn restore<T: Serialize + DeserializeOwned>(engine: &T) -> T {
    let bytes = bincode::serialize(engine).expect("serialize");
    let restored: T = bincode::deserialize(&bytes).expect("deserialize");
    let again = bincode::serialize(&restored).expect("serialize the restored value");
    assert!(
        again == bytes,
        "serialize → deserialize → serialize changed the bytes"
    );
    restored
}

/// A seeded stream like `random_trades` in `analytics.rs`, with the largest step between
/// timestamps as a knob: small steps give many trades with equal timestamps (where the arrival
/// order decides the open and close of a bar), and some trades arrive out of order, some of them
/// beyond the lateness.
fn random_trades(n: usize, seed: u64, max_step: i64) -> Vec<TradeRow> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut ts = 0i64;
    (0..n)
        .map(|_| {
            ts += rng.random_range(0..max_step.max(1));
            let t = if rng.random_ratio(1, 20) {
                ts - rng.random_range(0..1_500)
            } else {
                ts
            };
            let buyer = rng.random_range(0..6);
            TradeRow {
                instrument: rng.random_range(0..3),
                ts_ms: t,
                price: rng.random_range(90..110),
                quantity: rng.random_range(1..20),
                buyer,
                seller: (buyer + 1 + rng.random_range(0..5)) % 6,
            }
        })
        .collect()
}

/// Money per tick × lot of the three instruments: distinct, with fractions, so the totals depend
/// on the restored unit values.
fn unit_values() -> Vec<Decimal> {
    vec![Decimal::new(1, 2), Decimal::new(5, 1), Decimal::new(25, 1)]
}

/// Everything a [`BarEngine`] run produced: each push's output, then the flush.
type BarsRun = (Vec<BarsOutput>, Vec<kappa_analytics::Bar>);
/// Everything a [`PnlEngine`] run produced: each push's output, then the flush.
type PnlRun = (Vec<PnlOutput>, PnlOutput);

/// Pushes `trades` in batches of `batch`, snapshotting and restoring the engine before the batches
/// whose index is in `cuts` (the number of batches means: before the flush).
fn run_bars(
    trades: &[TradeRow],
    batch: usize,
    spec: WindowSpec,
    sma: &[usize],
    cuts: &BTreeSet<usize>,
) -> BarsRun {
    let mut e = BarEngine::new(spec, sma);
    let mut outs = Vec::new();
    let chunks: Vec<&[TradeRow]> = trades.chunks(batch).collect();
    for (k, chunk) in chunks.iter().enumerate() {
        if cuts.contains(&k) {
            e = restore(&e);
        }
        outs.push(e.push(chunk).unwrap());
    }
    if cuts.contains(&chunks.len()) {
        e = restore(&e);
    }
    (outs, e.flush().unwrap())
}

/// [`run_bars`] for a [`PnlEngine`].
fn run_pnl(trades: &[TradeRow], batch: usize, spec: WindowSpec, cuts: &BTreeSet<usize>) -> PnlRun {
    let mut e = PnlEngine::new(spec, unit_values());
    let mut outs = Vec::new();
    let chunks: Vec<&[TradeRow]> = trades.chunks(batch).collect();
    for (k, chunk) in chunks.iter().enumerate() {
        if cuts.contains(&k) {
            e = restore(&e);
        }
        outs.push(e.push(chunk).unwrap());
    }
    if cuts.contains(&chunks.len()) {
        e = restore(&e);
    }
    (outs, e.flush().unwrap())
}

/// The specs the tests run with: one window open at a time, several open at once (lateness longer
/// than a window), and no lateness.
const SPECS: [WindowSpec; 3] = [
    WindowSpec {
        length_ms: 1_000,
        lateness_ms: 300,
    },
    WindowSpec {
        length_ms: 200,
        lateness_ms: 700,
    },
    WindowSpec {
        length_ms: 500,
        lateness_ms: 0,
    },
];

#[test]
fn bar_engine_restored_at_every_batch_boundary_matches_an_uninterrupted_run() {
    for (seed, (spec, max_step)) in SPECS.into_iter().zip([40, 3, 10]).enumerate() {
        let trades = random_trades(2_000, seed as u64 + 100, max_step);
        let batch = 37;
        let batches = trades.len().div_ceil(batch);
        let whole = run_bars(&trades, batch, spec, &[2, 5], &BTreeSet::new());
        let bars = whole.0.iter().map(|o| o.bars.len()).sum::<usize>() + whole.1.len();
        let late: usize = whole.0.iter().map(|o| o.late.len()).sum();
        assert!(
            bars > 20 && late > 0,
            "meaningful: {bars} bars, {late} late"
        );

        let every: BTreeSet<usize> = (0..=batches).collect();
        assert!(
            run_bars(&trades, batch, spec, &[2, 5], &every) == whole,
            "spec {spec:?}: restoring before every batch changed the bars"
        );

        // The cuts fell while windows were open: a restored copy has bars left to flush.
        let mut e = BarEngine::new(spec, &[2, 5]);
        let mut open = 0;
        for chunk in trades.chunks(batch) {
            e.push(chunk).unwrap();
            open += usize::from(!restore(&e).flush().unwrap().is_empty());
        }
        assert!(
            open * 10 > batches * 9,
            "{open} of {batches} cuts had open windows"
        );

        // After the flush everything is late, restored or not.
        e.flush().unwrap();
        let mut e = restore(&e);
        let out = e.push(&trades[..10]).unwrap();
        assert_eq!((out.bars.len(), out.late.len()), (0, 10));
        assert!(e.flush().unwrap().is_empty());
    }
}

#[test]
fn pnl_engine_restored_at_every_batch_boundary_matches_an_uninterrupted_run() {
    for (seed, (spec, max_step)) in SPECS.into_iter().zip([40, 3, 10]).enumerate() {
        let trades = random_trades(2_000, seed as u64 + 200, max_step);
        let batch = 37;
        let batches = trades.len().div_ceil(batch);
        let whole = run_pnl(&trades, batch, spec, &BTreeSet::new());
        let rows = whole.0.iter().map(|o| o.rows.len()).sum::<usize>() + whole.1.rows.len();
        let late: usize = whole.0.iter().map(|o| o.late.len()).sum();
        assert!(
            rows > 100 && late > 0,
            "meaningful: {rows} rows, {late} late"
        );

        let every: BTreeSet<usize> = (0..=batches).collect();
        assert!(
            run_pnl(&trades, batch, spec, &every) == whole,
            "spec {spec:?}: restoring before every batch changed the P&L"
        );

        // The cuts fell while windows were open: a restored copy has rows left to flush.
        let mut e = PnlEngine::new(spec, unit_values());
        let mut open = 0;
        for chunk in trades.chunks(batch) {
            e.push(chunk).unwrap();
            open += usize::from(!restore(&e).flush().unwrap().rows.is_empty());
        }
        assert!(
            open * 10 > batches * 9,
            "{open} of {batches} cuts had open windows"
        );

        // After the flush everything is late, restored or not; positions are kept.
        e.flush().unwrap();
        let mut restored = restore(&e);
        for trader in 0..6 {
            for instrument in 0..3 {
                assert_eq!(
                    restored.position(trader, instrument),
                    e.position(trader, instrument)
                );
            }
        }
        let out = restored.push(&trades[..10]).unwrap();
        assert_eq!(
            (out.rows.len(), out.totals.len(), out.late.len()),
            (0, 0, 10)
        );
        assert_eq!(restored.flush().unwrap(), PnlOutput::default());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random streams, batch sizes, windows and cut points (one to three crashes per run).
    #[test]
    fn restoring_at_random_cut_points_changes_nothing(
        seed in any::<u64>(),
        n in 50usize..800,
        batch in 1usize..120,
        max_step in 1i64..60,
        length_ms in 50i64..2_000,
        lateness_ms in 0i64..2_500,
        sma in proptest::collection::vec(1usize..6, 0..3),
        cuts in proptest::collection::btree_set(any::<usize>(), 1..4),
    ) {
        let trades = random_trades(n, seed, max_step);
        let spec = WindowSpec { length_ms, lateness_ms };
        let batches = n.div_ceil(batch);
        let cuts: BTreeSet<usize> = cuts.into_iter().map(|c| c % (batches + 1)).collect();
        let none = BTreeSet::new();
        let (bars, pnl) = (
            run_bars(&trades, batch, spec, &sma, &none),
            run_pnl(&trades, batch, spec, &none),
        );
        prop_assert!(
            run_bars(&trades, batch, spec, &sma, &cuts) == bars,
            "bars changed by restoring at {:?}", cuts
        );
        prop_assert!(
            run_pnl(&trades, batch, spec, &cuts) == pnl,
            "P&L changed by restoring at {:?}", cuts
        );
    }

    /// Decimals are written as exact strings (the `serde-str` feature): any value keeps its
    /// mantissa, scale and sign through bincode.
    #[test]
    fn decimals_round_trip_through_bincode_bit_for_bit(
        mantissa in -(1i128 << 96) + 1..(1i128 << 96),
        scale in 0u32..=28,
    ) {
        let d = Decimal::from_i128_with_scale(mantissa, scale);
        let bytes = bincode::serialize(&d).unwrap();
        prop_assert_eq!(bytes.len(), 8 + d.to_string().len(), "a length-prefixed string");
        let back: Decimal = bincode::deserialize(&bytes).unwrap();
        prop_assert_eq!(back.serialize(), d.serialize());
    }
}

#[test]
fn decimal_edge_cases_round_trip_through_bincode_bit_for_bit() {
    let third = Decimal::ONE / Decimal::from(3);
    let mut values = vec![
        Decimal::ZERO,
        Decimal::from_str("0.00").unwrap(),
        Decimal::from_str("-1.50").unwrap(),
        Decimal::MAX,
        Decimal::MIN,
        Decimal::new(1, 28),
        Decimal::new(-1, 28),
        third,
        -third,
        Decimal::from(i64::MIN),
    ];
    // Negative zero (the sign bit of a zero is kept by the string form too).
    values.push(Decimal::from_parts(0, 0, 0, true, 3));
    for d in values {
        let bytes = bincode::serialize(&d).unwrap();
        assert_eq!(bytes[8..], *d.to_string().as_bytes(), "{d} as a string");
        let back: Decimal = bincode::deserialize(&bytes).unwrap();
        assert_eq!(back.serialize(), d.serialize(), "{d} bit for bit");
    }
    // Positions carry exact fractional averages (100.666… = 302/3) and 128-bit amounts.
    let mut p = Position::default();
    p.fill(true, 1, 100).unwrap();
    p.fill(true, 2, 101).unwrap();
    p.fill(false, 1, 97).unwrap();
    p.fill(true, i64::MAX / 4, i64::MAX).unwrap();
    assert!(p.notional > i64::MAX as i128);
    let back: Position = bincode::deserialize(&bincode::serialize(&p).unwrap()).unwrap();
    assert_eq!(back, p);
    assert_eq!(back.avg_price(), p.avg_price());
}

#[test]
fn trade_rows_and_clocks_round_trip() {
    let trades = random_trades(50, 7, 40);
    let back: Vec<TradeRow> = bincode::deserialize(&bincode::serialize(&trades).unwrap()).unwrap();
    assert_eq!(back, trades);

    let spec = SPECS[0];
    let mut clock = Clock::new(spec);
    let mut restored = Clock::new(spec);
    for (k, t) in trades.iter().enumerate() {
        if k % 7 == 0 {
            restored = restore(&clock);
        }
        assert_eq!(restored.admit(t.ts_ms), clock.admit(t.ts_ms));
        assert_eq!(restored.watermark(), clock.watermark());
    }
    let back: WindowSpec = bincode::deserialize(&bincode::serialize(&spec).unwrap()).unwrap();
    assert_eq!(back, spec);
}

#[test]
fn truncated_or_corrupt_snapshots_are_errors_not_panics() {
    let trades = random_trades(300, 11, 10);
    let spec = SPECS[1];
    let mut bars = BarEngine::new(spec, &[2, 3]);
    bars.push(&trades).unwrap();
    let mut pnl = PnlEngine::new(spec, unit_values());
    pnl.push(&trades).unwrap();
    let bars = bincode::serialize(&bars).unwrap();
    let pnl = bincode::serialize(&pnl).unwrap();
    for cut in 0..bars.len() {
        assert!(bincode::deserialize::<BarEngine>(&bars[..cut]).is_err());
    }
    for cut in 0..pnl.len() {
        assert!(bincode::deserialize::<PnlEngine>(&pnl[..cut]).is_err());
    }
    // SMA lengths out of order.
    let mut e = BarEngine::new(spec, &[2, 3]);
    e.push(&trades).unwrap();
    let mut bytes = bincode::serialize(&e).unwrap();
    // Clock (spec 2 × i64, max_ts, watermark) then the SMA lengths: u64 count, then u64 each.
    let sma = 4 * 8 + 8;
    assert_eq!(
        bytes[sma..sma + 16],
        [2, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0]
    );
    bytes[sma] = 3;
    let err = bincode::deserialize::<BarEngine>(&bytes)
        .err()
        .expect("rejected");
    assert!(err.to_string().contains("SMA lengths"), "{err}");
}
