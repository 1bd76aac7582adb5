//! The jobs' logic without a broker: each job driven record by record through the runtime's
//! harness. What the exactly-once machinery relies on is checked here directly: a job's sequence
//! of deterministic outputs does not depend on how its input was batched, and a state restored
//! from a snapshot continues exactly as if never stopped.

use kappa_engine::Instruments;
use kappa_exchange::analytics::profit::ProfitJob;
use kappa_exchange::analytics::sma::SmaJob;
use kappa_exchange::analytics::AnalyticsArgs;
use kappa_exchange::config;
use kappa_exchange::generator::{self, FlowConfig};
use kappa_exchange::matchmaker::MatchMaker;
use kappa_exchange::runtime::harness::{Harness, Sent};
use kappa_exchange::runtime::job::Job;
use kappa_exchange::topics::Topics;

/// (key, payload, timestamp) records of one input partition.
type Input = Vec<(Vec<u8>, Vec<u8>, i64)>;

fn instruments() -> Instruments {
    config::load_instruments(None).unwrap()
}

fn orders(n: usize, seed: u64) -> Input {
    let cfg = FlowConfig {
        count: n,
        seed,
        ..Default::default()
    };
    generator::flow(&cfg, &instruments())
        .map(|(k, v, t)| (k.into_bytes(), v, t))
        .collect()
}

fn trades(n: usize, seed: u64) -> Input {
    kappa_exchange::bench::synthetic_trades(n, seed, &instruments())
        .iter()
        .map(|t| {
            (
                t.instrument.clone().into_bytes(),
                serde_json::to_vec(t).unwrap(),
                t.ts_ms,
            )
        })
        .collect()
}

/// Runs `input` through a fresh job from `make`, ending a batch every `batch` records (and at
/// the end); when `restart_at` is set, saves the state there and continues on a fresh job restored
/// from it. Returns the deterministic outputs (state outputs, batch-dependent by design, left
/// out) and the number of state outputs.
fn run<J: Job>(
    make: impl Fn() -> J,
    input: &Input,
    batch: usize,
    restart_at: Option<usize>,
    end_of_input: bool,
) -> (Vec<Sent>, usize) {
    let partitions = |_: &str| 4;
    let mut h = Harness::new(make(), partitions);
    let mut sent = Vec::new();
    for (i, (key, payload, ts)) in input.iter().enumerate() {
        if restart_at == Some(i) {
            h.end_batch(0).unwrap();
            let bytes = h.save(0).unwrap();
            sent.append(&mut h.sent);
            let seq = h.sequence(0).unwrap();
            h = Harness::new(make(), partitions);
            h.restore_with(0, &bytes, seq).unwrap();
        }
        h.feed(0, i as i64, *ts, key, payload).unwrap();
        if (i + 1) % batch == 0 {
            h.end_batch(0).unwrap();
        }
    }
    h.end_batch(0).unwrap();
    if end_of_input {
        h.end_of_input(0).unwrap();
    }
    sent.append(&mut h.sent);
    let states = sent.iter().filter(|s| s.origin.seq.is_none()).count();
    sent.retain(|s| s.origin.seq.is_some());
    // The origin offset of an output computed at the end of a batch is the batch's last input
    // (provenance, not identity): everything else must match.
    for s in &mut sent {
        s.origin.offset = 0;
    }
    (sent, states)
}

fn check<J: Job>(
    make: impl Fn() -> J,
    input: &Input,
    batches: &[usize],
    end_of_input: bool,
    what: &str,
) {
    let (reference, _) = run(&make, input, input.len(), None, end_of_input);
    assert!(reference.len() > 100, "{what}: {} outputs", reference.len());
    for &batch in batches {
        let (got, _) = run(&make, input, batch, None, end_of_input);
        let first = got.iter().zip(&reference).position(|(a, b)| a != b);
        assert!(
            got == reference,
            "{what}, batches of {batch}: {} outputs vs {}, first difference at {first:?}: {:?}",
            got.len(),
            reference.len(),
            first.map(|i| (got[i].text(), reference[i].text()))
        );
    }
    for cut in [input.len() / 5, input.len() / 2, input.len() * 4 / 5] {
        let (got, _) = run(&make, input, 250, Some(cut), end_of_input);
        let first = got.iter().zip(&reference).position(|(a, b)| a != b);
        assert!(
            got == reference,
            "{what}, restored at {cut}: {} outputs vs {}, first difference at {first:?}",
            got.len(),
            reference.len()
        );
    }
}

#[test]
fn match_maker_outputs_do_not_depend_on_batching_or_restarts() {
    let inst = instruments();
    let input = orders(20_000, 5);
    // One orders partition: every instrument is matched here.
    let make = || {
        MatchMaker::new(
            &inst,
            "orders".into(),
            Topics::default(),
            1,
            kappa_engine::EngineConfig::default(),
        )
    };
    check(make, &input, &[1, 7, 500], false, "match maker");
    // After a restore, the book of every instrument is published again.
    let (_, states) = run(make, &input, 20_000, None, false);
    let mut h = Harness::new(make(), |_| 4);
    for (i, (k, v, t)) in input.iter().enumerate().take(1000) {
        h.feed(0, i as i64, *t, k, v).unwrap();
    }
    h.sent.clear();
    h.recovered(0).unwrap();
    assert_eq!(h.sent.len(), inst.len(), "one book per instrument");
    assert!(h
        .sent
        .iter()
        .all(|s| s.topic == "book" && s.origin.seq.is_none()));
    assert!(states > 0);
}

#[test]
fn sma_calculator_outputs_do_not_depend_on_batching_or_restarts() {
    let args = AnalyticsArgs {
        window: 10,
        sma: vec![3, 5],
        ..AnalyticsArgs::default()
    };
    let input = trades(6_000, 6);
    let make = || SmaJob::new(instruments(), args.clone(), Topics::default());
    check(make, &input, &[3, 40, 500], true, "sma calculator");
}

#[test]
fn profit_calculator_outputs_do_not_depend_on_batching_or_restarts() {
    // Several windows close in one batch with large batches, one at a time with small ones: the
    // P&L rows and totals of a window must come out in the same order either way (they did not:
    // rows of every window, then totals of every window). 2 ms windows: the 120 ms of trades make
    // 60 windows, so the whole input in one batch is also published in pieces of at most 16
    // closed windows (the job's memory bound), and must still come out the same.
    let args = AnalyticsArgs {
        window: 2,
        sma: vec![3],
        ..AnalyticsArgs::default()
    };
    let input = trades(6_000, 7);
    let make = || ProfitJob::new(instruments(), args.clone(), Topics::default());
    check(make, &input, &[3, 40, 500], true, "profit calculator");
}
