//! In-process simulation: run the engine over a generated order flow and summarize the market
//! per instrument (trades, volume, VWAP, last price, top of book). No Kafka involved; this is
//! what `kappa simulate` prints, and the yardstick the pipeline's output is compared against.

use crate::report::{InstrumentSummary, Summary};
use kappa_engine::workload::{generate, Profile, WorkloadConfig};
use kappa_engine::{Engine, Event, EventBody, InstrumentId, Instruments, Request};

/// Runs `commands` through a fresh engine and summarizes the outcome.
pub fn run(instruments: &Instruments, commands: &[Request]) -> Summary {
    let mut engine = Engine::new(instruments.clone());
    let mut events: Vec<Event> = Vec::with_capacity(1024);
    let mut summary = Summary {
        commands: commands.len(),
        instruments: instruments
            .ids()
            .map(|id| InstrumentSummary {
                symbol: instruments.symbol(id).to_string(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    for command in commands {
        engine.execute(*command, &mut events);
        summary.events += events.len();
        for event in events.drain(..) {
            match event.body {
                EventBody::Trade(t) => {
                    let s = &mut summary.instruments[t.instrument.0 as usize];
                    let price = instruments.ticks_to_price(t.instrument, t.price);
                    let qty = instruments.lots_to_qty(t.instrument, t.quantity);
                    s.trades += 1;
                    s.volume += qty;
                    s.notional += price * qty;
                    s.last_price = Some(price);
                }
                EventBody::Rejected(_) => summary.rejects += 1,
                _ => {}
            }
        }
    }
    for (i, s) in summary.instruments.iter_mut().enumerate() {
        let id = InstrumentId(i as u16);
        let price = |t| instruments.ticks_to_price(id, t);
        s.best_bid = engine.best(id, kappa_engine::Side::Buy).map(price);
        s.best_ask = engine.best(id, kappa_engine::Side::Sell).map(price);
    }
    summary.resting_orders = Some(engine.resting_count());
    summary
}

/// Generates a mixed flow over the first `n_instruments` instruments and runs it.
pub fn simulate(
    instruments: &Instruments,
    messages: usize,
    n_instruments: usize,
    seed: u64,
) -> Summary {
    let config = WorkloadConfig {
        messages,
        instruments: n_instruments,
        seed,
        profile: Profile::Mixed,
        ..Default::default()
    };
    run(instruments, &generate(&config, instruments))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::render;
    use rust_decimal::Decimal;

    #[test]
    fn summary_totals_match_the_engine_output() {
        let instruments = crate::config::load_instruments(None).unwrap();
        let a = simulate(&instruments, 20_000, 3, 7);
        assert_eq!(a, simulate(&instruments, 20_000, 3, 7), "deterministic");
        assert_eq!(a.commands, 20_000);
        let traded: Vec<_> = a.instruments.iter().filter(|s| s.trades > 0).collect();
        assert_eq!(traded.len(), 3, "only the first 3 instruments trade");
        for s in traded {
            let vwap = s.vwap().unwrap();
            assert!(vwap > Decimal::ZERO);
            // Book is never crossed at the end.
            if let (Some(b), Some(a)) = (s.best_bid, s.best_ask) {
                assert!(b < a, "{} crossed: {b} >= {a}", s.symbol);
            }
        }
        let table = render(&a);
        assert!(table.contains("TCS") && table.contains("vwap"));
    }
}
