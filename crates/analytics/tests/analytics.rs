//! Hand-computed expectations for bars, SMAs and P&L, lateness, and batch-size independence.
// Expected values are written as wide tuples so each row reads like a table line.
#![allow(clippy::type_complexity)]

use kappa_analytics::{Bar, BarEngine, PnlEngine, Position, Ratio, TradeRow, WindowSpec};
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;

const SEC: WindowSpec = WindowSpec {
    length_ms: 1_000,
    lateness_ms: 0,
};

fn trade(
    instrument: u32,
    ts_ms: i64,
    price: i64,
    quantity: i64,
    buyer: u32,
    seller: u32,
) -> TradeRow {
    TradeRow {
        instrument,
        ts_ms,
        price,
        quantity,
        buyer,
        seller,
    }
}

fn d(v: i64) -> Decimal {
    Decimal::from(v)
}

fn r(v: i64) -> Ratio {
    Ratio::from(v)
}

#[test]
fn ohlcv_bars_and_smas_by_hand() {
    let trades = vec![
        trade(0, 100, 10, 1, 1, 2),
        trade(1, 150, 50, 2, 1, 2),
        trade(0, 400, 12, 3, 1, 2),
        trade(0, 900, 9, 1, 1, 2),
        trade(0, 999, 11, 5, 1, 2), // close of window [0, 1000)
        trade(0, 1_200, 13, 2, 1, 2),
        trade(0, 2_500, 15, 1, 1, 2),
        trade(0, 3_100, 14, 1, 1, 2), // closes [2000, 3000)
    ];
    let mut e = BarEngine::new(SEC, &[2, 3]);
    let mut out = e.push(&trades).unwrap();
    out.bars.extend(e.flush().unwrap());
    let b: Vec<(u32, i64, i64, i64, i64, i64, i64, i64, i64)> = out
        .bars
        .iter()
        .map(|b| {
            (
                b.instrument,
                b.start_ms,
                b.open,
                b.high,
                b.low,
                b.close,
                b.volume,
                b.notional,
                b.trades,
            )
        })
        .collect();
    assert_eq!(
        b,
        vec![
            (0, 0, 10, 12, 9, 11, 10, 10 + 36 + 9 + 55, 4),
            (1, 0, 50, 50, 50, 50, 2, 100, 1),
            (0, 1_000, 13, 13, 13, 13, 2, 26, 1),
            (0, 2_000, 15, 15, 15, 15, 1, 15, 1),
            (0, 3_000, 14, 14, 14, 14, 1, 14, 1),
        ],
        "emitted in (window, instrument) order"
    );
    // VWAP of instrument 0, first window: 110 / 10 = 11 ticks.
    assert_eq!(out.bars[0].notional / out.bars[0].volume, 11);
    // SMA sums over the last 2 and 3 closes of instrument 0: 11, 13, 15, 14.
    let sma0: Vec<Vec<(usize, Option<i64>)>> = out
        .bars
        .iter()
        .filter(|b| b.instrument == 0)
        .map(|b| b.sma_sums.clone())
        .collect();
    assert_eq!(
        sma0,
        vec![
            vec![(2, None), (3, None)],
            vec![(2, Some(24)), (3, None)],
            vec![(2, Some(28)), (3, Some(39))],
            vec![(2, Some(29)), (3, Some(42))],
        ]
    );
    assert!(out.late.is_empty());
}

#[test]
fn late_trades_are_returned_not_dropped() {
    let mut e = BarEngine::new(
        WindowSpec {
            length_ms: 1_000,
            lateness_ms: 200,
        },
        &[],
    );
    let out = e
        .push(&[
            trade(0, 500, 10, 1, 1, 2),
            trade(0, 1_150, 11, 1, 1, 2),
            trade(0, 900, 12, 1, 1, 2),
        ])
        .unwrap();
    assert!(
        out.late.is_empty(),
        "900 arrives while the watermark is 950: [0,1000) still open"
    );
    let out2 = e
        .push(&[trade(0, 1_500, 13, 1, 1, 2), trade(0, 950, 14, 1, 1, 2)])
        .unwrap();
    assert_eq!(out2.late, vec![trade(0, 950, 14, 1, 1, 2)]);
    let first: Vec<&Bar> = out
        .bars
        .iter()
        .chain(&out2.bars)
        .filter(|b| b.start_ms == 0)
        .collect();
    assert_eq!(first.len(), 1);
    assert_eq!(
        (first[0].open, first[0].close, first[0].trades),
        (10, 12, 2),
        "late trade not in the bar"
    );
}

#[test]
fn average_cost_walk_through_with_a_flip_from_long_to_short() {
    let mut p = Position::default();
    let fill = |p: &mut Position, buy, qty, price| p.fill(buy, qty, price).unwrap();
    fill(&mut p, true, 10, 100);
    fill(&mut p, true, 10, 110);
    assert_eq!(
        (p.quantity, p.avg_price(), p.realized()),
        (20, r(105), r(0))
    );
    fill(&mut p, false, 15, 120); // sell 15: realize 15 × (120 − 105)
    assert_eq!(
        (p.quantity, p.avg_price(), p.realized()),
        (5, r(105), r(225))
    );
    assert_eq!(p.unrealized(125), Some(r(100)));
    fill(&mut p, false, 10, 90); // close 5 at a loss of 5 × 15, open short 5 at 90
    assert_eq!(
        (p.quantity, p.avg_price(), p.realized()),
        (-5, r(90), r(150))
    );
    assert_eq!(
        p.unrealized(80),
        Some(r(50)),
        "short gains when the price falls"
    );
    fill(&mut p, false, 5, 100); // add to the short: average (5×90 + 5×100)/10
    assert_eq!((p.quantity, p.avg_price()), (-10, r(95)));
    fill(&mut p, true, 10, 80); // cover everything: 10 × (95 − 80)
    assert_eq!((p.quantity, p.avg_price(), p.realized()), (0, r(0), r(300)));
    assert_eq!((p.volume, p.fills), (60, 6));
    // Total = cash + quantity × mark, an exact integer; flat here, so the realized P&L.
    assert_eq!(p.total(1_000), Some(300));
}

#[test]
fn pnl_against_several_counterparties_by_hand() {
    // Trader 1 buys from 2 and 3, then sells to 4; instrument 0 is worth 0.5 money per tick×lot.
    let unit = Decimal::new(5, 1);
    let mut e = PnlEngine::new(SEC, vec![unit]);
    let trades = vec![
        trade(0, 100, 100, 4, 1, 2),
        trade(0, 200, 104, 4, 1, 3),
        trade(0, 1_100, 110, 6, 4, 1), // closes window 0
        trade(0, 2_100, 108, 1, 2, 3), // closes window 1
    ];
    let mut out = e.push(&trades).unwrap();
    let flushed = e.flush().unwrap();
    out.rows.extend(flushed.rows);
    out.totals.extend(flushed.totals);
    // Window 0: trader 1 long 8 at 102; traders 2 and 3 short 4 each.
    let w0: Vec<(u32, i64, Ratio, i64, i64, i64)> = out
        .rows
        .iter()
        .filter(|r| r.window_start == 0)
        .map(|r| {
            (
                r.trader,
                r.position.quantity,
                r.position.avg_price(),
                r.mark,
                r.window_bought,
                r.window_sold,
            )
        })
        .collect();
    assert_eq!(
        w0,
        vec![
            (1, 8, r(102), 104, 8, 0),
            (2, -4, r(100), 104, 0, 4),
            (3, -4, r(104), 104, 0, 4)
        ]
    );
    // Window 1: trader 1 sold 6 at 110 → realized 6 × 8 = 48 ticks×lots = 24 money; 2 left at 102.
    let r1 = out
        .rows
        .iter()
        .find(|r| r.window_start == 1_000 && r.trader == 1)
        .unwrap();
    assert_eq!(
        (r1.position.quantity, r1.position.realized(), r1.window_sold),
        (2, r(48), 6)
    );
    assert_eq!(
        r1.position.realized().round(e.unit_value(0), 6),
        Some(d(24))
    );
    // Totals at the close of window 1 (mark 110): trader 1 = (48 + 2×(110−102)) × 0.5 = 32.
    let t1 = out.totals.iter().find(|t| t.window_start == 1_000).unwrap();
    assert_eq!(t1.totals.iter().find(|(t, _)| *t == 1).unwrap().1, d(32));
    // Trader 2 short 4 at 100 marked at 110: −40 × 0.5 = −20.
    assert_eq!(t1.totals.iter().find(|(t, _)| *t == 2).unwrap().1, d(-20));
    // Every window that had trades is reported, in order.
    let windows: Vec<i64> = out.totals.iter().map(|t| t.window_start).collect();
    assert_eq!(windows, vec![0, 1_000, 2_000]);
}

fn random_trades(n: usize, seed: u64) -> Vec<TradeRow> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut ts = 0i64;
    (0..n)
        .map(|_| {
            ts += rng.random_range(0..40);
            // Occasionally out of order, sometimes beyond the lateness.
            let t = if rng.random_ratio(1, 20) {
                ts - rng.random_range(0..1_500)
            } else {
                ts
            };
            let buyer = rng.random_range(0..6);
            trade(
                rng.random_range(0..3),
                t,
                rng.random_range(90..110),
                rng.random_range(1..20),
                buyer,
                (buyer + 1 + rng.random_range(0..5)) % 6,
            )
        })
        .collect()
}

#[test]
fn results_do_not_depend_on_batch_size() {
    let trades = random_trades(3_000, 3);
    let spec = WindowSpec {
        length_ms: 1_000,
        lateness_ms: 300,
    };
    let run = |batch: usize| {
        let mut bars = BarEngine::new(spec, &[3, 5]);
        let mut pnl = PnlEngine::new(spec, vec![Decimal::ONE; 3]);
        let (mut b, mut p, mut t, mut late) = (Vec::new(), Vec::new(), Vec::new(), 0);
        for chunk in trades.chunks(batch) {
            let o = bars.push(chunk).unwrap();
            late += o.late.len();
            b.extend(o.bars);
            let o = pnl.push(chunk).unwrap();
            p.extend(o.rows);
            t.extend(o.totals);
        }
        b.extend(bars.flush().unwrap());
        let o = pnl.flush().unwrap();
        p.extend(o.rows);
        t.extend(o.totals);
        (b, p, t, late)
    };
    let whole = run(trades.len());
    assert!(
        whole.0.len() > 60 && whole.1.len() > 100 && whole.3 > 0,
        "meaningful: {} bars, {} late",
        whole.0.len(),
        whole.3
    );
    for batch in [5, 64, 999] {
        assert!(
            run(batch) == whole,
            "batch size {batch} changed the results"
        );
    }
}

#[test]
fn bars_match_a_hand_written_single_pass() {
    // Reference model: one pass over the non-late trades, no Polars.
    let trades = random_trades(3_000, 9);
    let spec = WindowSpec {
        length_ms: 500,
        lateness_ms: 100,
    };
    let mut e = BarEngine::new(spec, &[]);
    let mut out = e.push(&trades).unwrap();
    out.bars.extend(e.flush().unwrap());
    let mut clock = kappa_analytics::Clock::new(spec);
    let mut expect: std::collections::BTreeMap<
        (i64, u32),
        (
            i64,
            i64,
            i64,
            i64,
            i64,
            i64,
            i64,
            (i64, usize),
            (i64, usize),
        ),
    > = Default::default();
    for (k, t) in trades.iter().enumerate() {
        let Some(w) = clock.admit(t.ts_ms) else {
            continue;
        };
        let e = expect.entry((w, t.instrument)).or_insert((
            t.price,
            t.price,
            t.price,
            t.price,
            0,
            0,
            0,
            (t.ts_ms, k),
            (t.ts_ms, k),
        ));
        e.1 = e.1.max(t.price);
        e.2 = e.2.min(t.price);
        if (t.ts_ms, k) < e.7 {
            e.7 = (t.ts_ms, k);
            e.0 = t.price;
        }
        if (t.ts_ms, k) >= e.8 {
            e.8 = (t.ts_ms, k);
            e.3 = t.price;
        }
        e.4 += t.quantity;
        e.5 += t.quantity * t.price;
        e.6 += 1;
    }
    let got: Vec<_> = out
        .bars
        .iter()
        .map(|b| {
            (
                (b.start_ms, b.instrument),
                (
                    b.open, b.high, b.low, b.close, b.volume, b.notional, b.trades,
                ),
            )
        })
        .collect();
    let want: Vec<_> = expect
        .into_iter()
        .map(|(k, v)| (k, (v.0, v.1, v.2, v.3, v.4, v.5, v.6)))
        .collect();
    assert_eq!(got, want);
}
