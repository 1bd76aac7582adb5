//! Memory budgets, measured with a counting allocator: the bytes per entry that the documented
//! budgets (next to each pod's limit in k8s/) are computed from must hold, and the bounded
//! structures must stay at their bound however much is fed.

use kappa_exchange::config::load_instruments;
use kappa_exchange::serving::state::{Limits, MarketState};
use kappa_exchange::wire::{OrderEventMessage, PnlMessage};
use rust_decimal::Decimal;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Counts live heap bytes (requested sizes; the system allocator's own overhead is extra).
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
/// Allocation calls (alloc and realloc).
static CALLS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        CALLS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        CALLS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Tests run on threads of one process: measure one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

fn d(v: i64) -> Decimal {
    Decimal::new(v, 2)
}

/// A realistic order status: every field set, as the match maker writes them.
fn order_event(id: u64) -> OrderEventMessage {
    OrderEventMessage {
        order_id: id,
        trader: format!("T{:04}", id % 5000),
        instrument: "RELIANCE".into(),
        status: "PARTIALLY_FILLED".into(),
        reason: Some("ioc_remainder".into()),
        side: Some("BUY".into()),
        price: Some(d(250_005)),
        quantity: Some(d(10_000)),
        filled: Some(d(4_000)),
        leaves: Some(d(6_000)),
        last_price: Some(d(250_000)),
        last_quantity: Some(d(1_000)),
        command: None,
        order_type: Some("LIMIT".into()),
        time_in_force: Some("GTC".into()),
        ts_ms: 1_700_000_000_000 + id as i64,
    }
}

fn pnl_row(trader: usize, instrument: &str) -> PnlMessage {
    PnlMessage {
        kind: "pnl".into(),
        trader: format!("TRADER-{trader:06}"),
        instrument: instrument.into(),
        end_ms: 1_700_000_000_000,
        position: d(1_000),
        avg_price: d(250_005),
        realized: d(-12_345),
        unrealized: d(6_789),
        total: d(-5_556),
        mark: d(250_100),
        mark_sma: Some(d(250_050)),
        unrealized_sma: Some(d(4_000)),
        volume: d(50_000),
        notional: d(12_500_250),
        window_bought: d(1_000),
        window_sold: d(0),
    }
}

/// Fills market-view's order statuses to a cap of 50 000 with `event(id)` for ids `0..cap`,
/// checks the bytes per order against the documented budget, then applies `churn` × cap more and
/// checks the state did not grow past its cap. Returns the state and the cap.
fn order_statuses_at_their_cap(
    event: impl Fn(u64) -> OrderEventMessage,
    churn: u64,
    what: &str,
) -> (MarketState, u64) {
    let instruments = load_instruments(None).unwrap();
    let cap = 50_000;
    let limits = Limits {
        orders: cap,
        ..Limits::default()
    };
    let before = live();
    let mut state = MarketState::new(&instruments, limits);
    for id in 0..cap as u64 {
        state.apply_order_event(event(id));
    }
    let at_cap = live() - before;
    let per_order = at_cap as usize / cap;
    println!("{per_order} bytes per kept order status{what} (requested sizes)");
    assert!(
        per_order <= Limits::BYTES_PER_ORDER,
        "{per_order} B per order is above the documented {} B",
        Limits::BYTES_PER_ORDER
    );
    // `churn` times the cap later, the state has not grown (beyond hash-table slack).
    for id in cap as u64..(1 + churn) * cap as u64 {
        state.apply_order_event(event(id));
    }
    let after = live() - before;
    assert!(
        after <= at_cap + at_cap / 4,
        "grew from {at_cap} to {after} bytes past its cap"
    );
    (state, cap as u64)
}

#[test]
fn market_view_order_statuses_fit_their_budget_and_stay_at_their_cap() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (state, cap) = order_statuses_at_their_cap(order_event, 4, "");
    assert!(state.order(0).is_none() && state.order(5 * cap - 1).is_some());
    assert_eq!(
        state.orders_of("T0000", usize::MAX, false).len(),
        cap as usize / 5000,
        "the per-trader index lost or kept too much"
    );
}

/// The per-trader index at its worst: every order another trader's (one index entry each).
#[test]
fn market_view_order_statuses_fit_their_budget_with_a_trader_per_order() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let one_each = |id: u64| OrderEventMessage {
        trader: format!("T{id:07}"),
        ..order_event(id)
    };
    let (state, cap) = order_statuses_at_their_cap(one_each, 2, ", one trader each");
    assert!(state.orders_of("T0000000", 1, false).is_empty());
    assert_eq!(
        state
            .orders_of(&format!("T{:07}", 3 * cap - 1), 10, false)
            .len(),
        1
    );
}

#[test]
fn market_view_pnl_fits_its_budget_and_keeps_at_most_its_traders() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let instruments = load_instruments(None).unwrap();
    let traders = 5_000;
    let symbols = ["TCS", "INFY", "RELIANCE"];
    let limits = Limits {
        pnl_traders: traders,
        ..Limits::default()
    };
    let before = live();
    let mut state = MarketState::new(&instruments, limits);
    for t in 0..traders {
        for s in symbols {
            state.apply_pnl(pnl_row(t, s));
        }
    }
    let at_cap = live() - before;
    let per_row = at_cap as usize / (traders * symbols.len());
    println!("{per_row} bytes per kept P&L row (requested sizes)");
    assert!(
        per_row <= Limits::BYTES_PER_PNL_ROW,
        "{per_row} B per P&L row is above the documented {} B",
        Limits::BYTES_PER_PNL_ROW
    );
    for t in traders..4 * traders {
        for s in symbols {
            state.apply_pnl(pnl_row(t, s));
        }
    }
    let after = live() - before;
    assert!(
        after <= at_cap + at_cap / 4,
        "grew from {at_cap} to {after} bytes past its cap"
    );
    assert!(state.pnl("TRADER-000000").is_none());
    assert!(state
        .pnl(&format!("TRADER-{:06}", 4 * traders - 1))
        .is_some());
}

#[test]
fn market_view_pnl_history_fits_its_budget_and_stays_at_its_cap() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let instruments = load_instruments(None).unwrap();
    let (traders, points) = (500, 600);
    let limits = Limits {
        pnl_traders: traders,
        pnl_history: points,
        ..Limits::default()
    };
    let mut state = MarketState::new(&instruments, limits);
    let window = |state: &mut MarketState, w: usize| {
        for t in 0..traders {
            state.apply_pnl(PnlMessage {
                end_ms: 1_700_000_000_000 + 1000 * w as i64,
                ..pnl_row(t, "TCS")
            });
        }
    };
    // One window: the rows (and one point each); then the histories fill up.
    window(&mut state, 0);
    let rows = live();
    for w in 1..points {
        window(&mut state, w);
    }
    let at_cap = live() - rows;
    let per_point = at_cap as usize / (traders * (points - 1));
    println!("{per_point} bytes per kept P&L history point (requested sizes)");
    assert!(
        per_point <= Limits::BYTES_PER_PNL_POINT,
        "{per_point} B per point is above the documented {} B",
        Limits::BYTES_PER_PNL_POINT
    );
    for w in points..3 * points {
        window(&mut state, w);
    }
    let after = live() - rows;
    assert!(
        after <= at_cap + at_cap / 50,
        "grew from {at_cap} to {after} bytes past its cap"
    );
    let kept = state.pnl_history("TRADER-000000", usize::MAX).unwrap();
    assert_eq!(kept.points.len(), points);
    assert_eq!(
        kept.points.last().unwrap().end_ms,
        1_700_000_000_000 + 1000 * (3 * points as i64 - 1)
    );
}

#[test]
fn market_view_rate_limit_buckets_fit_their_budget_and_stay_at_their_cap() {
    use kappa_exchange::serving::guard::MAX_BUCKETS;
    use kappa_exchange::serving::limits::{Rate, RateLimiter, BYTES_PER_BUCKET};
    use std::net::{IpAddr, Ipv6Addr};
    use std::time::{Duration, Instant};
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rate = Rate {
        per_second: 1.0,
        burst: 5.0,
    };
    let t0 = Instant::now();
    // Addresses (a flood from distinct /64s) and traders (16-character names), 3× the cap each,
    // each bucket in use (not refilled), so making room must drop live buckets.
    let before = live();
    let by_ip = RateLimiter::<IpAddr>::new(rate, MAX_BUCKETS);
    let by_trader = RateLimiter::<String>::new(rate, MAX_BUCKETS);
    for i in 0..3 * MAX_BUCKETS as u64 {
        let now = t0 + Duration::from_micros(i);
        let ip = IpAddr::V6(Ipv6Addr::new(
            0x2001,
            0xdb8,
            (i >> 16) as u16,
            i as u16,
            0,
            0,
            0,
            1,
        ));
        let _ = by_ip.check(&ip, now);
        let _ = by_trader.check(&format!("TRADER{i:010}"), now);
        assert!(by_ip.len() <= MAX_BUCKETS && by_trader.len() <= MAX_BUCKETS);
    }
    let used = (live() - before) as usize;
    let per_bucket = used / (2 * MAX_BUCKETS);
    println!("{per_bucket} bytes per rate-limit bucket (requested sizes, both maps full)");
    assert!(
        per_bucket <= BYTES_PER_BUCKET,
        "{per_bucket} B per bucket is above the documented {BYTES_PER_BUCKET} B"
    );
}

/// Allocation calls made by `f`.
fn calls_in(f: impl FnOnce()) -> usize {
    let before = CALLS.load(Ordering::Relaxed);
    f();
    CALLS.load(Ordering::Relaxed) - before
}

/// Feeds `input` to a harness in batches of `batch`, the first `warm` records untimed; returns
/// (allocation calls per record inside `Job::handle`, per batch inside `Job::after_batch`).
fn allocations<J: kappa_exchange::runtime::job::Job>(
    job: J,
    input: &[(Vec<u8>, Vec<u8>, i64)],
    warm: usize,
    batch: usize,
) -> (f64, f64) {
    use kappa_exchange::runtime::harness::Harness;
    let mut h = Harness::new(job, |_| 8);
    h.discard_outputs();
    let (mut in_handle, mut in_batches, mut batches) = (0, 0, 0);
    for (n, chunk) in input.chunks(batch).enumerate() {
        let first = n * batch;
        let calls = calls_in(|| {
            for (i, (k, v, t)) in chunk.iter().enumerate() {
                h.feed(0, (first + i) as i64, *t, k, v).unwrap();
            }
        });
        let at_end = calls_in(|| h.end_batch(0).unwrap());
        if first >= warm {
            in_handle += calls;
            in_batches += at_end;
            batches += 1;
        }
    }
    assert!(h.discarded > 0, "the job published");
    let records = input.len() - warm;
    (
        in_handle as f64 / records as f64,
        in_batches as f64 / batches as f64,
    )
}

/// The hot path allocates nothing per message (issue 14): after a warm-up in which the books,
/// the id index and the reused buffers reach their working size, the match maker's and the
/// analytics jobs' `handle` make (amortized) no allocation per record — only what grows with live
/// state (a new price level, the slab doubling) and the rare reject's text. Per-batch work (depth
/// publication, the Polars windows) allocates per batch, not per record.
#[test]
fn jobs_make_no_allocation_per_record() {
    use kappa_exchange::analytics::{profit::ProfitJob, sma::SmaJob, AnalyticsArgs};
    use kappa_exchange::generator::{self, FlowConfig};
    use kappa_exchange::matchmaker::MatchMaker;
    use kappa_exchange::topics::Topics;
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let inst = load_instruments(None).unwrap();
    let orders: Vec<_> = generator::flow(
        &FlowConfig {
            count: 300_000,
            seed: 11,
            ..Default::default()
        },
        &inst,
    )
    .map(|(k, v, t)| (k.into_bytes(), v, t))
    .collect();
    let mm = MatchMaker::new(
        &inst,
        "orders".into(),
        Topics::default(),
        1,
        kappa_engine::EngineConfig::default(),
    );
    let (per_order, per_batch) = allocations(mm, &orders, 100_000, 5_000);
    println!("match maker: {per_order:.4} allocations per order in handle, {per_batch:.1} per batch of 5000 after it");
    assert!(
        per_order < 0.01,
        "the match maker allocates {per_order} times per order"
    );

    let trades: Vec<_> = kappa_exchange::bench::synthetic_trades(300_000, 12, &inst)
        .iter()
        .map(|t| {
            (
                t.instrument.clone().into_bytes(),
                serde_json::to_vec(t).unwrap(),
                t.ts_ms,
            )
        })
        .collect();
    let args = AnalyticsArgs::default();
    let sma = SmaJob::new(inst.clone(), args.clone(), Topics::default());
    let (per_trade, per_batch) = allocations(sma, &trades, 100_000, 5_000);
    println!("sma calculator: {per_trade:.4} allocations per trade in handle, {per_batch:.1} per batch of 5000 after it");
    assert!(
        per_trade < 0.01,
        "the SMA calculator allocates {per_trade} times per trade"
    );
    let profit = ProfitJob::new(inst.clone(), args, Topics::default());
    let (per_trade, per_batch) = allocations(profit, &trades, 100_000, 5_000);
    println!("profit calculator: {per_trade:.4} allocations per trade in handle, {per_batch:.1} per batch of 5000 after it");
    assert!(
        per_trade < 0.01,
        "the profit calculator allocates {per_trade} times per trade"
    );
}
