//! Any command stream: the engine and the deliberately simple reference model of its tests
//! (crates/engine/tests/common/reference.rs) emit identical events and depth after every command,
//! with a small duplicate-id window so ids are forgotten and reused, and a wide price band so
//! books grow past the ladder's near tier. Malformed commands (off tick, zero, negative, unknown
//! instrument, foreign owner) are part of the stream.
#![no_main]

#[path = "../../crates/engine/tests/common/mod.rs"]
mod common;

use common::reference::Reference;
use common::{id, instruments};
use kappa_engine::{
    AmendOrder, CancelOrder, Command, Engine, EngineConfig, NewOrder, OrderType, Side,
    TimeInForce,
};
use libfuzzer_sys::fuzz_target;
use rust_decimal::Decimal;

const TRADERS: [&str; 3] = ["A", "B", "C"];
const SYMBOLS: [&str; 3] = ["XYZ", "ABC", "NOPE"];

/// Six bytes → one command.
fn command(op: &[u8]) -> Command {
    let (kind, a, b, c, d, e) = (op[0], op[1], op[2], op[3], op[4], op[5]);
    let symbol = match a % 16 {
        15 => SYMBOLS[2],
        x => SYMBOLS[usize::from(x % 2)],
    };
    let trader = id(TRADERS[(b % 3) as usize]);
    let order_id = u64::from(c % 64) + 1; // few ids: duplicates, reuse and cancels collide often
    // Prices over ±300 ticks around 400 (XYZ tick 1, ABC tick 0.5), sometimes off tick.
    let ticks = 100 + i64::from(u16::from_le_bytes([d, e]) % 600);
    let price = match symbol {
        "ABC" => Decimal::new(ticks * 5, 1),
        _ => Decimal::from(ticks),
    } + if e % 37 == 0 { Decimal::new(1, 2) } else { Decimal::ZERO };
    let lots = i64::from(d % 16) - 1; // -1 and 0 are invalid
    let qty = match symbol {
        "ABC" => Decimal::new(lots, 1),
        _ => Decimal::from(lots),
    };
    let side = if b & 0x80 == 0 { Side::Buy } else { Side::Sell };
    match kind % 8 {
        0..=4 => {
            let (order_type, time_in_force) = match (kind >> 3) % 6 {
                0 => (OrderType::Market, TimeInForce::Ioc),
                1 => (OrderType::Limit, TimeInForce::Ioc),
                2 => (OrderType::Limit, TimeInForce::Fok),
                _ => (OrderType::Limit, TimeInForce::Gtc),
            };
            Command::New(NewOrder {
                order_id,
                trader,
                instrument: id(symbol),
                side,
                order_type,
                time_in_force,
                post_only: kind & 0x40 != 0 && time_in_force == TimeInForce::Gtc,
                price: (order_type == OrderType::Limit).then_some(price),
                quantity: qty,
            })
        }
        5 | 6 => Command::Cancel(CancelOrder {
            order_id,
            trader,
            instrument: id(symbol),
        }),
        _ => Command::Amend(AmendOrder {
            order_id,
            trader,
            instrument: id(symbol),
            price: (kind & 0x10 != 0).then_some(price),
            quantity: (kind & 0x20 != 0).then_some(qty),
            total: kind & 0x40 != 0,
        }),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&config, ops)) = data.split_first() else {
        return;
    };
    let depth_levels = 1 + usize::from(config % 10);
    let window = [0usize, 1, 3, 16, 1000][usize::from(config / 10) % 5];
    let engine_config = EngineConfig {
        depth_levels,
        finished_ids_window: window,
    };
    let mut engine = Engine::with_config(instruments(), engine_config);
    let mut reference = Reference::new(instruments(), depth_levels, window);
    let mut depth = Vec::new();
    for (n, op) in ops.chunks_exact(6).enumerate() {
        let cmd = command(op);
        let got = engine.apply(&cmd);
        let want = reference.apply(&cmd);
        assert_eq!(got, want, "command #{n}: {cmd:?}");
        if n % 3 == 0 {
            depth.clear();
            engine.drain_depth(&mut depth);
            assert_eq!(depth, reference.drain_depth(), "depth after command #{n}");
        }
    }
});
