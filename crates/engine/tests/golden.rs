//! Golden output: the complete events, depth updates and final snapshot of seeded workloads,
//! hashed byte for byte (bincode, FNV-1a), must equal the values recorded before the engine's
//! performance work. Any change to what the engine emits, or to its serialized state, shows up
//! here. (If the workload generator itself changes on purpose, re-record the values.)
//!
//! Every profile runs with the three id layouts of the benchmark (dense, block-shuffled,
//! random 64-bit), with depth drained after every message and conflated every 7 messages.

use kappa_engine::workload::{generate, Profile, WorkloadConfig};
use kappa_engine::{DepthUpdate, Engine, EngineConfig, Event, Instruments, Request};

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The benchmark's id bijections.
fn remap(layout: u8, id: u64) -> u64 {
    match layout {
        0 => id,
        1 => (id & !0xffff) | (id.wrapping_mul(40_503) & 0xffff),
        _ => {
            let mut z = id;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
    }
}

/// (events+depth hash, snapshot hash, events, depth updates)
fn run(
    profile: Profile,
    layout: u8,
    depth_every: usize,
    window: usize,
) -> (u64, u64, usize, usize) {
    let instruments =
        Instruments::from_toml_str(include_str!("../../../data/instruments.toml")).unwrap();
    let cfg = WorkloadConfig {
        messages: 60_000,
        seed: 7,
        profile,
        ..Default::default()
    };
    let mut stream = generate(&cfg, &instruments);
    for r in &mut stream {
        match r {
            Request::New(n) => n.order_id = remap(layout, n.order_id),
            Request::Cancel(c) => c.order_id = remap(layout, c.order_id),
            Request::Amend(a) => a.order_id = remap(layout, a.order_id),
        }
    }
    let mut engine = Engine::with_config(
        instruments,
        EngineConfig {
            finished_ids_window: window,
            ..Default::default()
        },
    );
    let mut out: Vec<Event> = Vec::new();
    let mut depth: Vec<DepthUpdate> = Vec::new();
    let (mut h, mut events, mut updates) = (0xcbf2_9ce4_8422_2325u64, 0, 0);
    for (n, r) in stream.iter().enumerate() {
        engine.execute(*r, &mut out);
        for e in &out {
            h = fnv(h, &bincode::serialize(e).unwrap());
        }
        events += out.len();
        out.clear();
        if n % depth_every == 0 {
            engine.drain_depth(&mut depth);
            for d in &depth {
                h = fnv(h, &bincode::serialize(d).unwrap());
            }
            updates += depth.len();
            depth.clear();
        }
    }
    let snapshot = fnv(0xcbf2_9ce4_8422_2325, &bincode::serialize(&engine).unwrap());
    (h, snapshot, events, updates)
}

#[test]
fn seeded_workloads_emit_exactly_the_recorded_output() {
    let mut got = Vec::new();
    for profile in [
        Profile::Mixed,
        Profile::Passive,
        Profile::Sweeping,
        Profile::Deep,
    ] {
        for layout in 0..3u8 {
            for (depth_every, window) in [(1, 100_000), (7, 5_000)] {
                let (h, s, e, d) = run(profile, layout, depth_every, window);
                got.push(format!(
                    "{profile:?} ids{layout} every{depth_every} window{window}: {h:016x} {s:016x} {e} {d}"
                ));
            }
        }
    }
    let got = got.join("\n");
    println!("{got}");
    assert_eq!(got, GOLDEN.trim());
}

const GOLDEN: &str = "
Mixed ids0 every1 window100000: 371d5810ffd19426 14c3b31d263ed3b0 113388 52511
Mixed ids0 every7 window5000: 219e4474f1a3855f 82d1edc927c9ed96 113388 25346
Mixed ids1 every1 window100000: 0d1ea90a178f318a c650526ddf8c40d6 113388 52511
Mixed ids1 every7 window5000: 6dd5484b636e59cb d630e8a6e5244024 113388 25346
Mixed ids2 every1 window100000: 0655b216db73ddab 1780ee6741f03189 113388 52511
Mixed ids2 every7 window5000: 70a823234ba96d9e f669620cdfbab946 113388 25346
Passive ids0 every1 window100000: 3adf5d1a9a8dfdde 2c32644d36780821 91504 48049
Passive ids0 every7 window5000: dd2d46a83297cf78 6fded46a107691db 91504 23368
Passive ids1 every1 window100000: 85fd7013270e39d1 f25e50f969a27256 91504 48049
Passive ids1 every7 window5000: 9e26052a83f8aacb abcd715e86574391 91504 23368
Passive ids2 every1 window100000: 907cf6ed91b20182 e8fd8ab208b3199a 91504 48049
Passive ids2 every7 window5000: 8eb7b7a6299df7e4 385a6a33198dfe1f 91504 23368
Sweeping ids0 every1 window100000: 50c72ebc8538bf4f 1adcbb18ab41602b 203479 51782
Sweeping ids0 every7 window5000: 406c9ed9518eced0 365f4bd3c48f3c32 203479 28080
Sweeping ids1 every1 window100000: ae2f05ca4e264d29 c82e94be0e31fca8 203479 51782
Sweeping ids1 every7 window5000: 693c6cb4f136942e 4aab62d2749de05d 203479 28080
Sweeping ids2 every1 window100000: 0366a7bb214ba25c 17b88cbc11abc53c 203479 51782
Sweeping ids2 every7 window5000: 9d58ce7738488bdf b30fccde7b409753 203479 28080
Deep ids0 every1 window100000: 225265d20331d8cf 535ea020f5ede1fb 98624 2984
Deep ids0 every7 window5000: fa22bec3777238c5 d731bc1b98e9117b 98624 1810
Deep ids1 every1 window100000: 4b0042028418fbd6 d37cc47322e8a962 98624 2984
Deep ids1 every7 window5000: a81f628da0c289a4 f2fd7d069090b1b8 98624 1810
Deep ids2 every1 window100000: da459c490f1de4ac c8fb8488aab6c3f9 98624 2984
Deep ids2 every7 window5000: 5a773735ba575492 f7f491224e6ad22a 98624 1810
";
