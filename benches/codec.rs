//! The codec on our own messages: the match maker's hot path per order — parse the `orders`
//! message, then build and serialize its outputs (`trades`, `order-events`) — with serde_json
//! (today's codec), with sonic-rs (SIMD JSON, same serde types) and hand-written (trades), over
//! 300 000 generated orders and the outputs the engine makes of them. Prints ns per message and
//! M messages/s; the fastest of 5 rounds each. sonic-rs is a dev-dependency only: it is measured,
//! not shipped.
//!
//!     cargo bench --bench codec

use kappa_engine::{Engine, EventBody, Instruments};
use kappa_exchange::analytics::TradeDecoder;
use kappa_exchange::config::load_instruments;
use kappa_exchange::generator::{flow, FlowConfig};
use kappa_exchange::wire::{
    parse_order, write_order_update, write_trade, OrderEventMessage, OrderFields, OrderMessage,
    TradeFields, TradeMessage,
};
use std::hint::black_box;
use std::time::Instant;

const ROUNDS: usize = 5;

/// Runs `f` over every item, `ROUNDS` times; the best round's ns per item.
fn time<T>(items: &[T], mut f: impl FnMut(&T)) -> f64 {
    (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            for i in items {
                f(i);
            }
            t.elapsed().as_nanos() as f64 / items.len() as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn line(what: &str, ns: f64) {
    println!("{what:<48} {ns:>8.1} ns  {:>6.2} M/s", 1e3 / ns);
}

fn main() {
    let instruments: Instruments = load_instruments(None).unwrap();
    let cfg = FlowConfig {
        count: 300_000,
        seed: 42,
        ..Default::default()
    };
    let orders: Vec<Vec<u8>> = flow(&cfg, &instruments).map(|(_, p, _)| p).collect();
    // The engine's outputs for these orders, as the match maker publishes them.
    let mut engine = Engine::new(instruments.clone());
    let (mut trades, mut updates, mut events) = (Vec::new(), Vec::new(), Vec::new());
    for o in &orders {
        let Ok(p) = parse_order(o) else { continue };
        engine.apply_into(&p.command, &mut events);
        for e in events.drain(..) {
            match e.body {
                EventBody::Trade(t) => trades.push(t),
                EventBody::Order(u) => updates.push(u),
                _ => {}
            }
        }
    }
    let ts = 1_700_000_000_000;
    let trade_msgs: Vec<TradeMessage> = trades
        .iter()
        .map(|t| TradeMessage::new(t, &instruments, 0, ts))
        .collect();
    let event_msgs: Vec<OrderEventMessage> = updates
        .iter()
        .map(|u| OrderEventMessage::from_update(u, &instruments, ts))
        .collect();
    let trade_json: Vec<Vec<u8>> = trade_msgs
        .iter()
        .map(|m| serde_json::to_vec(m).unwrap())
        .collect();
    println!(
        "{} orders ({} B avg), {} trades ({} B avg), {} order events",
        orders.len(),
        orders.iter().map(Vec::len).sum::<usize>() / orders.len(),
        trade_msgs.len(),
        trade_json.iter().map(Vec::len).sum::<usize>() / trade_json.len().max(1),
        event_msgs.len()
    );
    // Do the two codecs agree on every message, both ways? A codec that writes other bytes is
    // not a drop-in replacement (decimals must keep their exact text).
    let same_out = trade_msgs
        .iter()
        .zip(&trade_json)
        .filter(|(m, j)| sonic_rs::to_vec(m).ok().as_ref() == Some(j))
        .count();
    let same_in = trade_msgs
        .iter()
        .zip(&trade_json)
        .filter(|(m, j)| sonic_rs::from_slice::<TradeMessage>(j).ok().as_ref() == Some(m))
        .count();
    let orders_same = orders
        .iter()
        .take(20_000)
        .filter(|o| serde_json::from_slice::<OrderMessage>(o).ok() == sonic_rs::from_slice(o).ok())
        .count();
    println!(
        "sonic-rs vs serde_json: same bytes written for {same_out} of {} trades, same trade read \
         back for {same_in}, same order read for {orders_same} of 20000 orders",
        trade_msgs.len()
    );
    if let (Some(m), Ok(other)) = (trade_msgs.first(), sonic_rs::to_string(&trade_msgs[0])) {
        println!("  serde_json: {}", serde_json::to_string(m).unwrap());
        println!("  sonic-rs:   {other}");
    }

    println!("-- parse `orders`");
    line(
        "parse_order (today: direct scan, then checked)",
        time(&orders, |o| {
            let _ = black_box(parse_order(black_box(o)));
        }),
    );
    line(
        "direct scan OrderFields::scan (fields only)",
        time(&orders, |o| {
            let _ = black_box(OrderFields::scan(black_box(o)));
        }),
    );
    line(
        "serde_json  OrderFields::parse_serde (fields only)",
        time(&orders, |o| {
            let _ = black_box(OrderFields::parse_serde(black_box(o)));
        }),
    );
    line(
        "serde_json  OrderMessage (owned struct)",
        time(&orders, |o| {
            let _ = black_box(serde_json::from_slice::<OrderMessage>(black_box(o)));
        }),
    );
    line(
        "sonic-rs    OrderMessage (owned struct)",
        time(&orders, |o| {
            let _ = black_box(sonic_rs::from_slice::<OrderMessage>(black_box(o)));
        }),
    );

    println!("-- build + serialize `trades` (into a reused buffer)");
    let mut buf = Vec::with_capacity(1024);
    line(
        "build TradeMessage only",
        time(&trades, |t| {
            black_box(TradeMessage::new(black_box(t), &instruments, 0, ts));
        }),
    );
    line(
        "serde_json  to_writer",
        time(&trade_msgs, |m| {
            buf.clear();
            serde_json::to_writer(&mut buf, black_box(m)).unwrap();
            black_box(&buf);
        }),
    );
    line(
        "sonic-rs    to_writer",
        time(&trade_msgs, |m| {
            buf.clear();
            sonic_rs::to_writer(&mut buf, black_box(m)).unwrap();
            black_box(&buf);
        }),
    );

    line(
        "serde_json  build + to_writer (before)",
        time(&trades, |t| {
            buf.clear();
            let m = TradeMessage::new(black_box(t), &instruments, 0, ts);
            serde_json::to_writer(&mut buf, &m).unwrap();
            black_box(&buf);
        }),
    );
    line(
        "hand-written write_trade (now; same bytes)",
        time(&trades, |t| {
            buf.clear();
            write_trade(black_box(t), &instruments, 0, ts, &mut buf);
            black_box(&buf);
        }),
    );

    println!("-- build + serialize `order-events`");
    line(
        "build OrderEventMessage only",
        time(&updates, |u| {
            black_box(OrderEventMessage::from_update(
                black_box(u),
                &instruments,
                ts,
            ));
        }),
    );
    line(
        "serde_json  to_writer",
        time(&event_msgs, |m| {
            buf.clear();
            serde_json::to_writer(&mut buf, black_box(m)).unwrap();
            black_box(&buf);
        }),
    );
    line(
        "sonic-rs    to_writer",
        time(&event_msgs, |m| {
            buf.clear();
            sonic_rs::to_writer(&mut buf, black_box(m)).unwrap();
            black_box(&buf);
        }),
    );
    line(
        "serde_json  build + to_writer (before)",
        time(&updates, |u| {
            buf.clear();
            let m = OrderEventMessage::from_update(black_box(u), &instruments, ts);
            serde_json::to_writer(&mut buf, &m).unwrap();
            black_box(&buf);
        }),
    );
    line(
        "hand-written write_order_update (now; same bytes)",
        time(&updates, |u| {
            buf.clear();
            write_order_update(black_box(u), None, None, &instruments, ts, &mut buf);
            black_box(&buf);
        }),
    );

    println!("-- read `trades` (the analytics jobs' decode)");
    let trade_bytes: Vec<Vec<u8>> = trades
        .iter()
        .map(|t| {
            let mut b = Vec::new();
            write_trade(t, &instruments, 0, ts, &mut b);
            b
        })
        .collect();
    line(
        "serde_json  TradeMessage (owned; before issue 14)",
        time(&trade_bytes, |b| {
            let _ = black_box(serde_json::from_slice::<TradeMessage>(black_box(b)));
        }),
    );
    line(
        "serde_json  TradeFields (borrowed, used fields)",
        time(&trade_bytes, |b| {
            let _ = black_box(serde_json::from_slice::<TradeFields>(black_box(b)));
        }),
    );
    line(
        "fast path   TradeFields::parse (now)",
        time(&trade_bytes, |b| {
            let _ = black_box(TradeFields::parse(black_box(b)));
        }),
    );
    let mut decoder = TradeDecoder::new(instruments.clone(), usize::MAX);
    line(
        "TradeDecoder::decode (parse + ticks, lots, traders)",
        time(&trade_bytes, |b| {
            let _ = black_box(decoder.decode(black_box(b)));
        }),
    );
}
