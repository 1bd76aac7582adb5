//! Any bytes on the topics other jobs read: the analytics jobs' trade decoder and market-view's
//! decoder of `book`, `trades`, `order-events` and `analytics` never panic, and what they accept
//! can be applied to market-view's state without panicking.
#![no_main]

use kappa_exchange::analytics::TradeDecoder;
use kappa_exchange::config::load_instruments;
use kappa_exchange::serving::feed;
use kappa_exchange::serving::state::{Limits, MarketState};
use kappa_exchange::topics::Topics;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fuzz_target!(|data: &[u8]| {
    static INSTRUMENTS: OnceLock<kappa_engine::Instruments> = OnceLock::new();
    let instruments = INSTRUMENTS.get_or_init(|| load_instruments(None).unwrap());
    // The trade fast path reads what serde_json reads, or declines.
    if let Some(fast) = kappa_exchange::wire::TradeFields::parse_canonical(data) {
        let slow = serde_json::from_slice::<kappa_exchange::wire::TradeFields>(data).ok();
        assert_eq!(Some(fast), slow);
    }
    let mut decoder = TradeDecoder::new(instruments.clone(), 4);
    if let Ok(row) = decoder.decode(data) {
        assert!((row.instrument as usize) < instruments.len());
    }
    let topics = Topics::default();
    let mut state = MarketState::new(instruments, Limits::default());
    for topic in [&topics.book, &topics.trades, &topics.order_events, &topics.analytics] {
        let update = feed::decode(&topics, topic, data).ok();
        feed::apply(&mut state, update);
        let _ = state.instruments();
        let _ = state.delta("TCS", 0);
        let _ = state.leaderboard();
    }
});
