//! Seeded synthetic order flow for benchmarks, demos and tests.
//!
//! The default [`Profile::Mixed`] stream is shaped like the public matching-engine benchmarks:
//! about half new orders (15 % IOC, a few % market), ~40 % cancels and ~10 % amends, with limit
//! prices clustered around a random-walking mid price and a heavy (Pareto) tail away from it,
//! over several instruments and traders. [`Profile::Passive`] never crosses (zero trades) and
//! [`Profile::Sweeping`] sends large aggressive orders that sweep several levels.
//!
//! Generation runs a shadow [`Engine`] so that cancels and amends target orders that are really
//! live, as a real client's would. The same config and seed always give the same stream.

use crate::command::{AmendRequest, CancelRequest, NewRequest, Request};
use crate::engine::Engine;
use crate::instrument::Instruments;
use crate::types::{
    FixedStr, InstrumentId, Lots, OrderId, OrderType, Side, Ticks, TimeInForce, TraderId,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Shape of the generated flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// Realistic mix of passive and marketable flow (the main benchmark).
    Mixed,
    /// Only non-crossing limit orders, cancels and amends: no trades at all.
    Passive,
    /// Deep passive book plus large aggressive orders that sweep several levels.
    Sweeping,
    /// Passive flow spread uniformly over half the price range: a quarter of the stream rests
    /// (tens of thousands of price levels per side), then inserts and cancels land at any depth.
    Deep,
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct WorkloadConfig {
    pub messages: usize,
    /// Instruments used: the first `instruments` of the table.
    pub instruments: usize,
    pub traders: usize,
    pub seed: u64,
    pub profile: Profile,
    /// First order id.
    pub first_order_id: OrderId,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig {
            messages: 2_000_000,
            instruments: 5,
            traders: 200,
            seed: 42,
            profile: Profile::Mixed,
            first_order_id: 1_000_001,
        }
    }
}

/// A live order the generator may cancel or amend.
#[derive(Clone, Copy)]
struct Live {
    id: OrderId,
    trader: TraderId,
    instrument: InstrumentId,
}

/// Heavy-tailed distance from the mid, in ticks: mostly 0–5, occasionally hundreds.
fn pareto_ticks(rng: &mut ChaCha8Rng, alpha: f64, cap: Ticks) -> Ticks {
    let u: f64 = rng.random_range(f64::EPSILON..1.0);
    let x = u.powf(-1.0 / alpha) - 1.0; // Pareto(1, alpha) shifted to start at 0
    (x as Ticks).min(cap)
}

fn size(rng: &mut ChaCha8Rng, max: Lots) -> Lots {
    // Geometric-ish sizes: many small orders, some large.
    let u: f64 = rng.random_range(f64::EPSILON..1.0);
    ((-u.ln() * 20.0) as Lots + 1).min(max)
}

/// An endless, seeded stream of requests (see the module docs). `config.messages` sizes the
/// opening phase (its first 5 %) and the live-order floor.
pub struct Generator {
    config: WorkloadConfig,
    rng: ChaCha8Rng,
    traders: Vec<TraderId>,
    mids: Vec<Ticks>,
    shadow: Engine,
    scratch: Vec<crate::event::Event>,
    live: Vec<Live>,
    next_id: OrderId,
    min_live: usize,
    emitted: usize,
    n_instruments: usize,
}

impl Generator {
    /// A generator over the first `config.instruments` instruments of `instruments`.
    pub fn new(config: &WorkloadConfig, instruments: &Instruments) -> Self {
        let n_instruments = config.instruments.clamp(1, instruments.len());
        let traders = (0..config.traders.max(2))
            .map(|i| FixedStr::new(&format!("T{i:04}")).expect("short trader id"))
            .collect();
        let mids = (0..n_instruments)
            .map(|i| {
                let id = InstrumentId(i as u16);
                let spec = instruments.spec(id);
                spec.reference_price
                    .and_then(|p| instruments.price_to_ticks(id, p).ok())
                    .unwrap_or(10_000)
            })
            .collect();
        Generator {
            config: config.clone(),
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            traders,
            mids,
            shadow: Engine::new(instruments.clone()),
            scratch: Vec::new(),
            live: Vec::new(),
            next_id: config.first_order_id,
            // Cancels and amends only while enough orders rest, so the book keeps its depth.
            min_live: match config.profile {
                Profile::Deep => config.messages / 4,
                _ => (config.messages / 200).clamp(16, 10_000),
            },
            emitted: 0,
            n_instruments,
        }
    }

    /// One attempt at the next request; `None` when the attempt found no live order to target.
    fn attempt(&mut self) -> Option<Request> {
        let Generator {
            config,
            rng,
            traders,
            mids,
            shadow,
            scratch,
            live,
            next_id,
            min_live,
            emitted,
            n_instruments,
        } = self;
        let (n_instruments, min_live) = (*n_instruments, *min_live);
        let inst = rng.random_range(0..n_instruments);
        let instrument = InstrumentId(inst as u16);
        if config.profile == Profile::Mixed && rng.random_ratio(1, 64) {
            mids[inst] += if rng.random_bool(0.5) { 1 } else { -1 };
        }
        let mid = mids[inst];
        let roll: f64 = rng.random();
        let new_share = if config.profile == Profile::Sweeping {
            0.8
        } else {
            0.5
        };
        // The first 5 % of the stream opens the book with passive orders, so the rest of the
        // flow meets a book with realistic depth instead of an empty one.
        let opening = config.profile != Profile::Sweeping && *emitted < config.messages / 20;
        let request = if opening {
            let side = if rng.random_bool(0.5) {
                Side::Buy
            } else {
                Side::Sell
            };
            let sign = if side == Side::Buy { -1 } else { 1 };
            let off = 1 + pareto_ticks(rng, 1.2, mid / 2);
            let id = *next_id;
            *next_id += 1;
            Request::New(NewRequest {
                order_id: id,
                trader: traders[rng.random_range(0..traders.len())],
                instrument,
                side,
                order_type: OrderType::Limit,
                time_in_force: TimeInForce::Gtc,
                post_only: false,
                price: Some((mid + sign * off).max(1)),
                quantity: size(rng, 100),
            })
        } else if roll < new_share || shadow.resting_count() < min_live {
            let side = if rng.random_bool(0.5) {
                Side::Buy
            } else {
                Side::Sell
            };
            let trader = traders[rng.random_range(0..traders.len())];
            let sign = if side == Side::Buy { -1 } else { 1 };
            let (order_type, tif, price, qty) = match config.profile {
                Profile::Mixed => {
                    let kind: f64 = rng.random();
                    if kind < 0.03 {
                        (OrderType::Market, TimeInForce::Ioc, None, size(rng, 50))
                    } else if kind < 0.18 {
                        // IOC, usually marketable.
                        let p = mid - sign * rng.random_range(0..3);
                        (OrderType::Limit, TimeInForce::Ioc, Some(p), size(rng, 100))
                    } else if kind < 0.19 {
                        let p = mid - sign * 2;
                        (OrderType::Limit, TimeInForce::Fok, Some(p), size(rng, 100))
                    } else if kind < 0.25 {
                        // Marketable GTC limit: takes what is there, rests the rest.
                        (
                            OrderType::Limit,
                            TimeInForce::Gtc,
                            Some(mid - sign),
                            size(rng, 100),
                        )
                    } else {
                        // Passive, clustered at the touch with a heavy tail away from it.
                        let off = 1 + pareto_ticks(rng, 1.2, mid / 2);
                        (
                            OrderType::Limit,
                            TimeInForce::Gtc,
                            Some(mid + sign * off),
                            size(rng, 100),
                        )
                    }
                }
                Profile::Passive | Profile::Deep => {
                    let off = match config.profile {
                        Profile::Deep => rng.random_range(1..(mid / 2).max(2)),
                        _ => pareto_ticks(rng, 1.2, mid / 2) + 1,
                    };
                    let tif = if rng.random_ratio(15, 100) {
                        TimeInForce::Ioc
                    } else {
                        TimeInForce::Gtc
                    };
                    (
                        OrderType::Limit,
                        tif,
                        Some(mid + sign * off),
                        size(rng, 100),
                    )
                }
                Profile::Sweeping => {
                    if rng.random_ratio(1, 6) {
                        // Sweep up to ~10 levels through the other side.
                        let p = mid - sign * 10;
                        (
                            OrderType::Limit,
                            TimeInForce::Ioc,
                            Some(p),
                            50 + size(rng, 200),
                        )
                    } else {
                        let off = rng.random_range(1..12);
                        (
                            OrderType::Limit,
                            TimeInForce::Gtc,
                            Some(mid + sign * off),
                            size(rng, 40),
                        )
                    }
                }
            };
            let id = *next_id;
            *next_id += 1;
            Request::New(NewRequest {
                order_id: id,
                trader,
                instrument,
                side,
                order_type,
                time_in_force: tif,
                post_only: false,
                price: price.map(|p: Ticks| p.max(1)),
                quantity: qty,
            })
        } else {
            // Pick a live order, dropping ones the shadow engine has finished.
            let target = loop {
                if live.is_empty() {
                    break None;
                }
                // Bias towards recent orders, as real cancels are.
                let k = live.len() - 1 - pareto_ticks(rng, 0.8, live.len() as Ticks - 1) as usize;
                let candidate = live[k];
                if shadow.order(candidate.id).is_some() {
                    break Some(candidate);
                }
                live.swap_remove(k);
            };
            let target = target?;
            // Of the rest: 80 % cancels, 20 % amends.
            if (roll - new_share) / (1.0 - new_share) < 0.8 {
                Request::Cancel(CancelRequest {
                    order_id: target.id,
                    trader: target.trader,
                    instrument: target.instrument,
                })
            } else {
                let resting = shadow.order(target.id).expect("checked live");
                let amend: f64 = rng.random();
                let (price, quantity) = if amend < 0.5 {
                    let away = if resting.side == Side::Buy { -1 } else { 1 };
                    // Passive flow only ever moves away from the mid, so it never crosses.
                    let lo = if matches!(config.profile, Profile::Passive | Profile::Deep) {
                        0
                    } else {
                        -1
                    };
                    (
                        Some((resting.price + away * rng.random_range(lo..3)).max(1)),
                        None,
                    )
                } else if amend < 0.9 {
                    (None, Some((resting.leaves / 2).max(1)))
                } else {
                    (None, Some(resting.leaves + size(rng, 20)))
                };
                Request::Amend(AmendRequest {
                    order_id: target.id,
                    trader: target.trader,
                    instrument: target.instrument,
                    price,
                    quantity,
                    total: false,
                })
            }
        };
        scratch.clear();
        shadow.execute(request, scratch);
        if let Request::New(n) = request {
            if shadow.order(n.order_id).is_some() {
                live.push(Live {
                    id: n.order_id,
                    trader: n.trader,
                    instrument: n.instrument,
                });
            }
        }
        *emitted += 1;
        Some(request)
    }
}

impl Iterator for Generator {
    type Item = Request;

    fn next(&mut self) -> Option<Request> {
        loop {
            if let Some(request) = self.attempt() {
                return Some(request);
            }
        }
    }
}

/// Generates `config.messages` requests of the stream described by `config`.
pub fn generate(config: &WorkloadConfig, instruments: &Instruments) -> Vec<Request> {
    Generator::new(config, instruments)
        .take(config.messages)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventBody;

    fn instruments() -> Instruments {
        Instruments::from_toml_str(include_str!("../../../data/instruments.toml")).unwrap()
    }

    fn run(requests: &[Request], instruments: &Instruments) -> (usize, usize, usize) {
        let mut engine = Engine::new(instruments.clone());
        let mut out = Vec::new();
        for r in requests {
            engine.execute(*r, &mut out);
        }
        let trades = out
            .iter()
            .filter(|e| matches!(e.body, EventBody::Trade(_)))
            .count();
        let rejects = out
            .iter()
            .filter(|e| matches!(e.body, EventBody::Rejected(_)))
            .count();
        (out.len(), trades, rejects)
    }

    #[test]
    fn same_seed_same_stream_and_mix_is_realistic() {
        let inst = instruments();
        let cfg = WorkloadConfig {
            messages: 20_000,
            ..Default::default()
        };
        let a = generate(&cfg, &inst);
        assert_eq!(a, generate(&cfg, &inst));
        assert_ne!(
            a,
            generate(
                &WorkloadConfig {
                    seed: 7,
                    ..cfg.clone()
                },
                &inst
            )
        );
        let news = a.iter().filter(|r| matches!(r, Request::New(_))).count() as f64;
        let cancels = a.iter().filter(|r| matches!(r, Request::Cancel(_))).count() as f64;
        let n = a.len() as f64;
        assert!((0.45..0.6).contains(&(news / n)), "new ratio {}", news / n);
        assert!(
            (0.3..0.45).contains(&(cancels / n)),
            "cancel ratio {}",
            cancels / n
        );
        let (_, trades, rejects) = run(&a, &inst);
        assert!(trades > 1_000, "mixed flow trades: {trades}");
        // Cancels and amends target live orders, so they are (almost) never rejected.
        assert_eq!(rejects, 0);
    }

    #[test]
    fn passive_profile_never_trades_and_sweeping_trades_a_lot() {
        let inst = instruments();
        let passive = generate(
            &WorkloadConfig {
                messages: 20_000,
                profile: Profile::Passive,
                ..Default::default()
            },
            &inst,
        );
        assert_eq!(run(&passive, &inst).1, 0);
        let sweep = generate(
            &WorkloadConfig {
                messages: 20_000,
                profile: Profile::Sweeping,
                ..Default::default()
            },
            &inst,
        );
        let (_, trades, _) = run(&sweep, &inst);
        let aggressive = sweep
            .iter()
            .filter(|r| matches!(r, Request::New(n) if n.time_in_force == TimeInForce::Ioc))
            .count();
        assert!(
            trades > 2 * aggressive,
            "sweeps hit several orders each: {trades} trades for {aggressive} sweeps"
        );
    }
}
