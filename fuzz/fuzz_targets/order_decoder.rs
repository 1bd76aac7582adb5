//! Any bytes on `orders`: the decoder never panics; what it accepts normalizes without panicking
//! and survives a round trip through the canonical message; what it refuses becomes a reject
//! that is bounded and names the input by length and hash.
#![no_main]

use kappa_exchange::config::load_instruments;
use kappa_exchange::wire::{parse_order, OrderMessage, RejectMessage, SourceRef};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fuzz_target!(|data: &[u8]| {
    static INSTRUMENTS: OnceLock<kappa_engine::Instruments> = OnceLock::new();
    let instruments = INSTRUMENTS.get_or_init(|| load_instruments(None).unwrap());
    // The fast path reads what serde_json reads, or declines.
    if let Some(fast) = kappa_exchange::wire::OrderFields::scan(data) {
        assert_eq!(Some(fast), kappa_exchange::wire::OrderFields::parse_serde(data).ok());
    }
    match parse_order(data) {
        Ok(parsed) => {
            let command = parsed.command;
            if command.normalize(instruments).is_ok() {
                let message = OrderMessage::from_command(&command, 0);
                let bytes = serde_json::to_vec(&message).unwrap();
                let back = parse_order(&bytes).expect("the canonical message parses");
                assert_eq!(back.command, command, "round trip");
            }
        }
        Err(e) => {
            let source = SourceRef {
                topic: "orders".into(),
                partition: 0,
                offset: 0,
            };
            let reject = RejectMessage::new(&e.reason, &e.detail, data, source, "match-maker");
            let bytes = serde_json::to_vec(&reject).unwrap();
            assert!(bytes.len() < 16 * 1024, "a reject is bounded: {} bytes", bytes.len());
            assert_eq!(reject.payload_bytes, data.len() as u64);
        }
    }
});
