//! Any body (and Idempotency-Key) sent to `POST /orders` and `/orders/{id}/cancel|amend`: order
//! entry never panics, and what it accepts is a message the match maker parses back to the same
//! order, valid for the engine, with an id in range, for the authenticated trader and no other.
#![no_main]

use kappa_exchange::config::load_instruments;
use kappa_exchange::wire::parse_order;
use kappa_exchange::serving::orders::{change_order, new_order, IdAllocator};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fuzz_target!(|data: &[u8]| {
    static INSTRUMENTS: OnceLock<kappa_engine::Instruments> = OnceLock::new();
    static IDS: OnceLock<IdAllocator> = OnceLock::new();
    let instruments = INSTRUMENTS.get_or_init(|| load_instruments(None).unwrap());
    let ids = IDS.get_or_init(|| IdAllocator::with_key(b"fuzz"));
    // First byte: which endpoint; a header value may follow a NUL.
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let (body, key) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], std::str::from_utf8(&rest[i + 1..]).ok()),
        None => (rest, None),
    };
    const TRADER: &str = "FUZZ01";
    let prepared = match which % 3 {
        0 => new_order(body, TRADER, key, instruments, ids, 1_700_000_000_000),
        k => change_order(
            1_000_001,
            k == 2,
            body,
            TRADER,
            None,
            instruments,
            1_700_000_000_000,
        ),
    };
    if let Ok(p) = prepared {
        let back = parse_order(&p.payload).expect("the published message parses");
        assert_eq!(back.command.order_id(), p.id);
        assert!(
            back.command.normalize(instruments).is_ok(),
            "valid for the engine"
        );
        assert!(p.id < 1 << 53, "exact in JavaScript");
        assert_eq!(p.key, back.command.symbol().as_str());
        assert_eq!(
            back.command.trader().as_str(),
            TRADER,
            "the credential's trader only"
        );
    }
});
