//! Engine benchmark: throughput and per-message latency on seeded synthetic streams.
//!
//! ```text
//! cargo bench -p kappa-engine --bench engine                      # all four profiles
//! cargo bench -p kappa-engine --bench engine -- --profile mixed --messages 2000000 --depth-every 1
//! cargo bench -p kappa-engine --bench engine -- --ids sparse     # random 64-bit order ids
//! cargo bench -p kappa-engine --bench engine -- --memory-latency  # this machine's cache/DRAM latency
//! ```
//!
//! `--ids` rewrites the stream's order ids with a bijection (same orders, same matching):
//! `dense` as generated (consecutive), `shuffled` (each block of 65 536 consecutive ids permuted,
//! so ids arrive out of order with gaps), `sparse` (every id mixed over all 64 bits, like random
//! ids from many clients).
//!
//! The stream is generated first; only the engine loop is timed. Every event and depth update is
//! folded into a checksum so nothing is optimized away. Throughput comes from an untimed-per-
//! message pass; latency from a second pass on a fresh engine that reads the TSC around every
//! message (≈ 10 ns of overhead included in the figures).

use hdrhistogram::Histogram;
use kappa_engine::workload::{generate, Profile, WorkloadConfig};
use kappa_engine::{DepthUpdate, Engine, Event, EventBody, Instruments, Request};
use std::hint::black_box;
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Ids {
    Dense,
    Shuffled,
    Sparse,
}

/// Rewrites an order id (a bijection on u64, so distinct ids stay distinct).
fn remap(ids: Ids, id: u64) -> u64 {
    match ids {
        Ids::Dense => id,
        // An odd multiplier permutes the low 16 bits.
        Ids::Shuffled => (id & !0xffff) | (id.wrapping_mul(40_503) & 0xffff),
        // splitmix64's finalizer: invertible xor-shifts and odd multiplications.
        Ids::Sparse => {
            let mut z = id;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
    }
}

struct Args {
    ids: Vec<Ids>,
    profiles: Vec<Profile>,
    messages: Option<usize>,
    depth_every: usize,
    seed: u64,
    memory_latency: bool,
}

fn parse_args() -> Args {
    let mut args = Args {
        ids: vec![Ids::Dense],
        profiles: vec![
            Profile::Mixed,
            Profile::Passive,
            Profile::Sweeping,
            Profile::Deep,
        ],
        messages: None,
        depth_every: 1,
        seed: 42,
        memory_latency: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--profile" => {
                args.profiles = match it.next().as_deref() {
                    Some("mixed") => vec![Profile::Mixed],
                    Some("passive") => vec![Profile::Passive],
                    Some("sweeping") => vec![Profile::Sweeping],
                    Some("deep") => vec![Profile::Deep],
                    other => panic!("unknown profile {other:?} (mixed|passive|sweeping|deep)"),
                }
            }
            "--ids" => {
                args.ids = match it.next().as_deref() {
                    Some("dense") => vec![Ids::Dense],
                    Some("shuffled") => vec![Ids::Shuffled],
                    Some("sparse") => vec![Ids::Sparse],
                    Some("all") => vec![Ids::Dense, Ids::Shuffled, Ids::Sparse],
                    other => panic!("unknown ids {other:?} (dense|shuffled|sparse|all)"),
                }
            }
            "--messages" => args.messages = it.next().and_then(|v| v.parse().ok()),
            "--depth-every" => {
                args.depth_every = it.next().and_then(|v| v.parse().ok()).unwrap_or(1).max(1)
            }
            "--seed" => args.seed = it.next().and_then(|v| v.parse().ok()).unwrap_or(42),
            "--memory-latency" => args.memory_latency = true,
            _ => {} // cargo passes --bench; ignore anything else
        }
    }
    args
}

#[inline(always)]
fn fold(sum: u64, e: &Event) -> u64 {
    let x = match e.body {
        EventBody::Trade(t) => t.price as u64 ^ t.quantity.rotate_left(17),
        EventBody::Order(u) => u.leaves ^ u.order_id.rotate_left(7),
        EventBody::Accepted(a) => a.order_id,
        EventBody::Rejected(r) => r.order_id ^ 0xdead,
    };
    sum.wrapping_mul(31).wrapping_add(e.seq ^ x)
}

#[inline(always)]
fn fold_depth(sum: u64, d: &DepthUpdate) -> u64 {
    let top = d
        .depth
        .bids
        .levels()
        .first()
        .map_or(0, |l| l.price as u64 ^ l.quantity);
    sum.wrapping_mul(31).wrapping_add(d.seq ^ top)
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn ticks() -> u64 {
    // SAFETY: rdtsc has no preconditions on x86_64.
    unsafe { core::arch::x86_64::_rdtsc() }
}

#[cfg(not(target_arch = "x86_64"))]
fn ticks() -> u64 {
    use std::sync::OnceLock;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

struct Throughput {
    secs: f64,
    events: usize,
    depth_updates: usize,
    trades: usize,
    peak_resting: usize,
    peak_levels: usize,
    peak_heap: (usize, usize),
    checksum: u64,
}

fn run_throughput(instruments: &Instruments, stream: &[Request], depth_every: usize) -> Throughput {
    let mut engine = Engine::new(instruments.clone());
    let mut out: Vec<Event> = Vec::with_capacity(4096);
    let mut depth: Vec<DepthUpdate> = Vec::with_capacity(64);
    let (mut sum, mut events, mut depth_updates, mut trades) = (0u64, 0usize, 0usize, 0usize);
    let (mut peak_resting, mut peak_heap, mut peak_levels) = (0, (0, 0), 0);
    let start = Instant::now();
    for (n, r) in stream.iter().enumerate() {
        engine.execute(*r, &mut out);
        for e in &out {
            sum = fold(sum, e);
            trades += matches!(e.body, EventBody::Trade(_)) as usize;
        }
        events += out.len();
        out.clear();
        if n % depth_every == 0 {
            engine.drain_depth(&mut depth);
            for d in &depth {
                sum = fold_depth(sum, d);
            }
            depth_updates += depth.len();
            depth.clear();
        }
        if n & 1023 == 0 && engine.resting_count() > peak_resting {
            peak_resting = engine.resting_count();
            peak_heap = engine.heap_bytes();
            peak_levels = engine.level_count();
        }
    }
    let secs = start.elapsed().as_secs_f64();
    Throughput {
        secs,
        events,
        depth_updates,
        trades,
        peak_resting,
        peak_levels,
        peak_heap,
        checksum: black_box(sum),
    }
}

fn run_latency(
    instruments: &Instruments,
    stream: &[Request],
    depth_every: usize,
) -> (Histogram<u64>, u64) {
    let mut engine = Engine::new(instruments.clone());
    let mut out: Vec<Event> = Vec::with_capacity(4096);
    let mut depth: Vec<DepthUpdate> = Vec::with_capacity(64);
    let mut cycles = Vec::with_capacity(stream.len());
    let mut sum = 0u64;
    let wall = Instant::now();
    let t_start = ticks();
    for (n, r) in stream.iter().enumerate() {
        let t0 = ticks();
        engine.execute(*r, &mut out);
        if n % depth_every == 0 {
            engine.drain_depth(&mut depth);
        }
        for e in &out {
            sum = fold(sum, e);
        }
        for d in &depth {
            sum = fold_depth(sum, d);
        }
        let t1 = ticks();
        out.clear();
        depth.clear();
        cycles.push(t1 - t0);
    }
    let ns_per_tick = wall.elapsed().as_nanos() as f64 / (ticks() - t_start).max(1) as f64;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
    for c in cycles {
        hist.record(((c as f64 * ns_per_tick).round() as u64).max(1))
            .unwrap();
    }
    (hist, black_box(sum))
}

/// ns per load of a chain of dependent loads at random over `bytes` of memory (one cache line
/// per step, a single random cycle through all of them): the price of one cache miss that the
/// CPU cannot overlap with another — what an order-book operation pays per pointer it follows
/// into a working set of that size.
fn dependent_load_ns(bytes: usize) -> f64 {
    const LINE: usize = 8; // u64s per 64-byte line
    let lines = bytes / 64;
    // Sattolo's algorithm: a random cyclic permutation, so the chase visits every line.
    let mut order: Vec<usize> = (0..lines).collect();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in (1..lines).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % i as u64) as usize);
    }
    let mut next = vec![0u64; lines * LINE];
    for w in 0..lines {
        next[order[w] * LINE] = (order[(w + 1) % lines] * LINE) as u64;
    }
    let steps = 4_000_000usize.max(2 * lines);
    let mut at = 0usize;
    for _ in 0..lines {
        at = next[at] as usize; // warm-up: touch every line once
    }
    let t = Instant::now();
    for _ in 0..steps {
        at = next[at] as usize;
    }
    black_box(at);
    t.elapsed().as_nanos() as f64 / steps as f64
}

fn main() {
    let args = parse_args();
    if args.memory_latency {
        println!("dependent random loads (one cache miss each, none overlapped):");
        for mib in [1, 8, 32, 256] {
            println!(
                "  over {mib:>4} MiB   {:>6.1} ns per load",
                dependent_load_ns(mib << 20)
            );
        }
        return;
    }
    let instruments =
        Instruments::from_toml_str(include_str!("../../../data/instruments.toml")).unwrap();
    println!(
        "kappa-engine benchmark (depth drained every {} message(s), seed {})",
        args.depth_every, args.seed
    );
    for (profile, ids) in args
        .profiles
        .iter()
        .flat_map(|&p| args.ids.iter().map(move |&i| (p, i)))
    {
        let messages = args.messages.unwrap_or(match profile {
            Profile::Mixed => 2_000_000,
            _ => 1_000_000,
        });
        let cfg = WorkloadConfig {
            messages,
            seed: args.seed,
            profile,
            ..Default::default()
        };
        let g = Instant::now();
        let mut stream = generate(&cfg, &instruments);
        for r in &mut stream {
            match r {
                Request::New(n) => n.order_id = remap(ids, n.order_id),
                Request::Cancel(c) => c.order_id = remap(ids, c.order_id),
                Request::Amend(a) => a.order_id = remap(ids, a.order_id),
            }
        }
        let news = stream
            .iter()
            .filter(|r| matches!(r, Request::New(_)))
            .count();
        let cancels = stream
            .iter()
            .filter(|r| matches!(r, Request::Cancel(_)))
            .count();
        println!(
            "\n== {profile:?}, {ids:?} ids: {} messages ({:.0}% new, {:.0}% cancel, {:.0}% amend), {} instruments; generated in {:.2}s",
            stream.len(),
            100.0 * news as f64 / stream.len() as f64,
            100.0 * cancels as f64 / stream.len() as f64,
            100.0 * (stream.len() - news - cancels) as f64 / stream.len() as f64,
            cfg.instruments,
            g.elapsed().as_secs_f64()
        );
        // Warm-up pass (page faults, branch predictors), then the measured passes.
        let _ = run_throughput(
            &instruments,
            &stream[..stream.len().min(200_000)],
            args.depth_every,
        );
        let t = run_throughput(&instruments, &stream, args.depth_every);
        let (h, sum2) = run_latency(&instruments, &stream, args.depth_every);
        assert_eq!(t.checksum, sum2, "both passes must see identical output");
        let n = stream.len() as f64;
        println!(
            "throughput      {:>10.2} M messages/s   ({:.1} ns/message, {:.3} s)",
            n / t.secs / 1e6,
            t.secs * 1e9 / n,
            t.secs
        );
        println!(
            "latency/message p50 {} ns   p99 {} ns   p99.9 {} ns   max {} ns",
            h.value_at_quantile(0.50),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.max()
        );
        println!(
            "output          {} events, {} trades, {} depth updates (checksum {:016x})",
            t.events, t.trades, t.depth_updates, t.checksum
        );
        let (book_bytes, index_bytes) = t.peak_heap;
        println!(
            "book            peak {} resting orders on {} price levels; {} B/resting order in slab+levels; id index {:.1} MiB (live ids + the last {} finished)",
            t.peak_resting,
            t.peak_levels,
            book_bytes / t.peak_resting.max(1),
            index_bytes as f64 / (1 << 20) as f64,
            kappa_engine::DEFAULT_FINISHED_IDS_WINDOW
        );
    }
}
