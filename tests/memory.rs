//! Memory budgets, measured with a counting allocator: the bytes per entry that the documented
//! budgets (next to each pod's limit in k8s/) are computed from must hold, and the bounded
//! structures must stay at their bound however much is fed.

use kappa_exchange::config::load_instruments;
use kappa_exchange::serving::state::{Limits, MarketState};
use kappa_exchange::wire::{OrderEventMessage, PnlMessage};
use rust_decimal::Decimal;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Mutex;

/// Counts live heap bytes (requested sizes; the system allocator's own overhead is extra).
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
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

#[test]
fn market_view_order_statuses_fit_their_budget_and_stay_at_their_cap() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let instruments = load_instruments(None).unwrap();
    let cap = 50_000;
    let limits = Limits {
        orders: cap,
        ..Limits::default()
    };
    let before = live();
    let mut state = MarketState::new(&instruments, limits);
    for id in 0..cap as u64 {
        state.apply_order_event(order_event(id));
    }
    let at_cap = live() - before;
    let per_order = at_cap as usize / cap;
    println!("{per_order} bytes per kept order status (requested sizes)");
    assert!(
        per_order <= Limits::BYTES_PER_ORDER,
        "{per_order} B per order is above the documented {} B",
        Limits::BYTES_PER_ORDER
    );
    // Four times the cap later, the state has not grown (beyond hash-table slack).
    for id in cap as u64..5 * cap as u64 {
        state.apply_order_event(order_event(id));
    }
    let after = live() - before;
    assert!(
        after <= at_cap + at_cap / 4,
        "grew from {at_cap} to {after} bytes past its cap"
    );
    assert!(state.order(0).is_none() && state.order(5 * cap as u64 - 1).is_some());
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
