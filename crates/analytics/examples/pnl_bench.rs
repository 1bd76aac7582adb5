//! P&L engine alone over synthetic trades shaped like `kappa bench-analytics`'s (7 instruments
//! random-walking, 200 traders, 50 trades per ms, 1..100 lots), for profiling:
//! `cargo run --release -p kappa-analytics --example pnl_bench -- [trades] [batch]`.

use kappa_analytics::{PnlEngine, TradeRow, WindowSpec};
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(3_000_000, |a| a.parse().unwrap());
    let batch: usize = args.next().map_or(1_000_000, |a| a.parse().unwrap());
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(42);
    let mut mids = [15_000i64, 25_000, 4_000, 90_000, 12_000, 30_000, 7_000];
    let mut ts = 1_700_000_000_000i64;
    let trades: Vec<TradeRow> = (0..n)
        .map(|k| {
            let j = rng.random_range(0..mids.len());
            mids[j] = (mids[j] + rng.random_range(-1..=1)).max(1);
            if k % 50 == 0 {
                ts += 1;
            }
            let buyer = rng.random_range(0..200u32);
            let seller = (buyer + rng.random_range(1..200)) % 200;
            TradeRow {
                instrument: j as u32,
                ts_ms: ts,
                price: mids[j],
                quantity: rng.random_range(1..100),
                buyer,
                seller,
            }
        })
        .collect();
    let spec = WindowSpec {
        length_ms: 1_000,
        lateness_ms: 0,
    };
    for _ in 0..3 {
        let t = Instant::now();
        let mut e = PnlEngine::new(spec, vec![Decimal::new(1, 2); mids.len()]);
        let mut rows = 0;
        for chunk in trades.chunks(batch) {
            rows += e.push(chunk).unwrap().rows.len();
        }
        rows += e.flush().unwrap().rows.len();
        let s = t.elapsed().as_secs_f64();
        let mut roundings = 0;
        let mut positions = 0;
        for trader in 0..200 {
            for i in 0..mids.len() as u32 {
                if let Some(p) = e.position(trader, i) {
                    positions += 1;
                    roundings += p.avg_roundings;
                }
            }
        }
        println!(
            "{:.2} M trades/s ({rows} rows, {s:.3}s; {positions} positions, {roundings} average roundings)",
            n as f64 / s / 1e6
        );
    }
}
