//! The wire contract: every message on every topic (JSON, serde), in one place — one module per
//! topic family, the decimal encoding and the money rounding rule ([`decimal`]), one table of
//! enum names ([`names`]). Jobs, the serving layer, the demo and the reports read and write
//! messages only through these types.
//!
//! - [`orders`] — `orders` (the seed format and its extensions) and its parser;
//! - [`matching`] — `trades`, `order-events`, `book`;
//! - [`rejects`] — the `rejects` topic;
//! - [`analytics`] — `analytics` (bars, SMAs, P&L, totals, the leaderboard) and its decoder;
//! - [`schema`] — their JSON Schemas (the topics' files in `schemas/topics/`, the API's OpenAPI).

pub mod analytics;
pub mod decimal;
pub mod matching;
pub mod names;
pub mod orders;
pub mod rejects;
mod scan;
pub mod schema;

pub use analytics::*;
pub use decimal::*;
pub use matching::*;
pub use names::*;
pub use orders::*;
pub use rejects::*;

#[cfg(test)]
mod tests {
    use super::orders::parse_seed_timestamp;
    use super::*;
    use chrono::NaiveDateTime;
    use kappa_engine::{Command, FixedStr, OrderType, Side, TimeInForce};
    use rust_decimal::Decimal;

    /// Short plain decimals skip `Decimal::from_str`, and must come out identical to it: value,
    /// scale and sign bit (`serialize()` is the 16-byte representation).
    #[test]
    fn plain_decimals_read_exactly_as_the_general_parser() {
        use rand::{Rng, SeedableRng};
        use std::str::FromStr;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(15);
        let mut cases: Vec<String> = [
            "0",
            "-0",
            "0.00",
            "-0.00",
            "15.05",
            "3.0",
            "007",
            "0.5",
            "-12.340",
            "999999999999999999",
            "9999999999999999999",
            "99999999999999999.99",
            "1.",
            ".5",
            "1..2",
            "-",
            "",
            "1e3",
            "+1",
            "12345678901234567.8",
            "0.000000000000000001",
            "-9223372036854775808",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for _ in 0..20_000 {
            let len = rng.random_range(1..22);
            let mut t: String = (0..len)
                .map(|_| b"0123456789"[rng.random_range(0..10)] as char)
                .collect();
            if rng.random_bool(0.7) {
                t.insert(rng.random_range(0..=t.len()), '.');
            }
            if rng.random_bool(0.3) {
                t.insert(0, '-');
            }
            cases.push(t);
        }
        for c in &cases {
            let ours = decimal_from_json(c).map(|d| d.serialize());
            let general = rust_decimal::Decimal::from_str(c.trim())
                .or_else(|_| rust_decimal::Decimal::from_scientific(c.trim()))
                .ok()
                .map(|d| d.serialize());
            assert_eq!(ours, general, "{c:?}");
        }
    }

    /// `bytes` with one byte changed, inserted or removed, or cut short: the mutations the fast
    /// paths' tests feed to both readers.
    fn byte_mutation(rng: &mut rand_chacha::ChaCha8Rng, bytes: &[u8]) -> Vec<u8> {
        use rand::Rng;
        let mut x = bytes.to_vec();
        let at = rng.random_range(0..x.len());
        match rng.random_range(0..4) {
            0 => x[at] = b"0123456789-+.eE\"\\{}:, x\x01\xff"[rng.random_range(0..22)],
            1 => x.insert(at, b"0 .e\"\\-,"[rng.random_range(0..8)]),
            2 => {
                x.remove(at);
            }
            _ => x.truncate(at),
        }
        x
    }

    /// The trade fast path reads exactly what serde_json reads: for canonical messages (which it
    /// must take) and for every mutation of them (where it may only decline or agree).
    #[test]
    fn trade_fast_path_agrees_with_serde_on_every_input() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(14);
        let names = [
            "A",
            "TRADER-000042",
            "é名",
            "q\"uote",
            "back\\slash",
            "tab\t",
            "",
            "x y",
        ];
        let numbers = [
            "15.05",
            "0",
            "3.0",
            "-2",
            "1e3",
            "0.1000000000000000055511151231257827",
            "7E-2",
        ];
        let (mut canonical, mut agreed, mut declined) = (0, 0, 0);
        for n in 0..20_000 {
            let m = TradeMessage {
                trade_id: rng.random(),
                instrument: ["TCS", "INFY", "T\"CS"][rng.random_range(0..3)].into(),
                price: numbers[rng.random_range(0..numbers.len())]
                    .parse()
                    .unwrap_or_default(),
                quantity: Decimal::new(rng.random_range(-5..500), rng.random_range(0..4)),
                buyer: names[rng.random_range(0..names.len())].into(),
                seller: names[rng.random_range(0..names.len())].into(),
                buy_order_id: rng.random(),
                sell_order_id: rng.random(),
                aggressor: ["BUY", "SELL"][rng.random_range(0..2)].into(),
                ts_ms: rng.random_range(-5..i64::MAX),
            };
            let mut bytes = serde_json::to_vec(&m).unwrap();
            // Numbers in every JSON spelling the writer could use.
            if n % 3 == 0 {
                let text = String::from_utf8(bytes).unwrap().replacen(
                    &format!("\"price\":{}", m.price),
                    &format!("\"price\":{}", numbers[rng.random_range(0..numbers.len())]),
                    1,
                );
                bytes = text.into_bytes();
            }
            let plain = !bytes.contains(&b'\\');
            let fast = TradeFields::parse_canonical(&bytes);
            let slow = serde_json::from_slice::<TradeFields>(&bytes).ok();
            if plain {
                assert!(
                    fast.is_some(),
                    "the canonical form takes the fast path: {}",
                    String::from_utf8_lossy(&bytes)
                );
                canonical += 1;
            }
            assert!(
                fast.is_none() || fast == slow,
                "{}",
                String::from_utf8_lossy(&bytes)
            );
            // Mutations: a byte changed, inserted or removed, or the message cut short.
            for _ in 0..8 {
                let x = byte_mutation(&mut rng, &bytes);
                let fast = TradeFields::parse_canonical(&x);
                let slow = serde_json::from_slice::<TradeFields>(&x).ok();
                match fast {
                    Some(_) => {
                        assert_eq!(fast, slow, "{}", String::from_utf8_lossy(&x));
                        agreed += 1;
                    }
                    None => declined += 1,
                }
            }
        }
        assert!(
            canonical > 3_000 && agreed > 5_000 && declined > 10_000,
            "{canonical} {agreed} {declined}"
        );
        // The seed's numbers as strings, whitespace, another key order: serde's path, same fields.
        let other = br#"{ "ts_ms":5, "instrument":"TCS","price":"15.05","quantity":3,"buyer":"A","seller":"B"}"#;
        assert_eq!(TradeFields::parse_canonical(other), None);
        assert_eq!(
            TradeFields::parse(other).unwrap().price,
            Decimal::new(1505, 2)
        );
    }

    /// The order fast path reads exactly what serde_json reads: every message without escapes or
    /// nulls, in any key order and spacing, takes it; every mutation of one either reads the same
    /// fields or is declined (and serde_json decides).
    #[test]
    fn order_fast_path_agrees_with_serde_on_every_input() {
        use rand::seq::{IndexedRandom, SliceRandom};
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(16);
        fn slow(b: &[u8]) -> Option<OrderFields<'_>> {
            OrderFields::parse_serde(b).ok()
        }
        let strings = [
            "TCS", "T0001", "é名", "q\"uote", "tab\t", "", "BUY", "sell", "CANCEL",
        ];
        let values = [
            "15.05",
            "0",
            "-2",
            "1e3",
            "7E-2",
            "\"15.05\"",
            "\"x\"",
            "null",
            "true",
            "[1]",
            "01",
            "1.",
            "-",
            "{}",
        ];
        let spaces = ["", " ", "\n\t ", "\r"];
        let (mut taken, mut agreed, mut declined) = (0, 0, 0);
        for _ in 0..20_000 {
            // A random subset of the fields, in random order, with random values and spacing.
            let mut fields: Vec<(String, String)> = vec![
                ("id".into(), rng.random_range(0..u64::MAX).to_string()),
                (
                    "instrument".into(),
                    serde_json::to_string(strings.choose(&mut rng).unwrap()).unwrap(),
                ),
            ];
            for key in [
                "action",
                "trxn_type",
                "order_timestamp",
                "trader",
                "order_type",
                "time_in_force",
            ] {
                if rng.random_bool(0.5) {
                    let v = strings.choose(&mut rng).unwrap();
                    fields.push((key.into(), serde_json::to_string(v).unwrap()));
                }
            }
            for key in ["quantity", "total_quantity", "price"] {
                if rng.random_bool(0.5) {
                    let v = values[rng.random_range(0..6)];
                    fields.push((key.into(), v.into()));
                }
            }
            if rng.random_bool(0.3) {
                fields.push((
                    "post_only".into(),
                    ["true", "false"][rng.random_range(0..2)].into(),
                ));
            }
            fields.shuffle(&mut rng);
            let sp = |rng: &mut rand_chacha::ChaCha8Rng| spaces[rng.random_range(0..spaces.len())];
            let mut text = format!("{}{{{}", sp(&mut rng), sp(&mut rng));
            for (n, (k, v)) in fields.iter().enumerate() {
                if n > 0 {
                    text += &format!(",{}", sp(&mut rng));
                }
                text += &format!(
                    "\"{k}\"{}:{}{v}{}",
                    sp(&mut rng),
                    sp(&mut rng),
                    sp(&mut rng)
                );
            }
            text += &format!("}}{}", sp(&mut rng));
            let bytes = text.into_bytes();
            let fast = OrderFields::scan(&bytes);
            if !bytes.contains(&b'\\') {
                assert!(fast.is_some(), "{}", String::from_utf8_lossy(&bytes));
                taken += 1;
            }
            assert!(
                fast.is_none() || fast == slow(&bytes),
                "{}",
                String::from_utf8_lossy(&bytes)
            );
            // Mutations: a byte changed, inserted or removed, the message cut short, a field
            // repeated, a value replaced by something else.
            for _ in 0..8 {
                let mut x = bytes.clone();
                match rng.random_range(0..6) {
                    0..=3 => x = byte_mutation(&mut rng, &bytes),
                    4 => {
                        let (k, v) = fields.choose(&mut rng).unwrap();
                        let extra = format!("\"{k}\":{v},");
                        let open = x.iter().position(|&b| b == b'{').unwrap();
                        x.splice(open + 1..open + 1, extra.bytes());
                    }
                    _ => {
                        let (k, _) = fields.choose(&mut rng).unwrap();
                        let v = values.choose(&mut rng).unwrap();
                        let t = String::from_utf8_lossy(&x).into_owned();
                        let key = format!("\"{k}\"");
                        let Some(start) = t.find(&key) else { continue };
                        let colon = start + t[start..].find(':').unwrap() + 1;
                        let end = colon + t[colon..].find([',', '}']).unwrap_or(t.len() - colon);
                        x = format!("{}{v}{}", &t[..colon], &t[end..]).into_bytes();
                    }
                }
                match OrderFields::scan(&x) {
                    Some(fast) => {
                        assert_eq!(Some(fast), slow(&x), "{}", String::from_utf8_lossy(&x));
                        agreed += 1;
                    }
                    None => declined += 1,
                }
            }
        }
        assert!(
            taken > 5_000 && agreed > 8_000 && declined > 20_000,
            "{taken} {agreed} {declined}"
        );
        // The seed message takes the fast path; what it declines, serde_json decides alike.
        assert!(OrderFields::scan(SEED.as_bytes()).is_some());
        for declined in [
            r#"{"id":1,"instrument":"TCS","action":null}"#,
            r#"{"id":1,"instrument":"T\u0043S"}"#,
            r#"{"id":1,"instrument":"TCS","prise":1}"#,
            r#"{"id":1,"id":2,"instrument":"TCS"}"#,
            r#"{"instrument":"TCS"}"#,
            r#"{"id":1.0,"instrument":"TCS"}"#,
            r#"{"id":1,"instrument":"TCS"} x"#,
        ] {
            assert_eq!(OrderFields::scan(declined.as_bytes()), None, "{declined}");
        }
        assert_eq!(
            parse_order(br#"{"id":1,"instrument":"T\u0043S","trxn_type":"BUY","quantity":1}"#)
                .unwrap()
                .command
                .symbol()
                .as_str(),
            "TCS"
        );
    }

    #[test]
    fn rejects_are_bounded_whatever_the_input() {
        let source = || SourceRef {
            topic: "orders".into(),
            partition: 0,
            offset: 7,
        };
        // A 350 KB message of 0xFF bytes: each becomes U+FFFD (3 bytes) in lossy UTF-8.
        let hostile = vec![0xFFu8; 350_000];
        let r = RejectMessage::new(
            "malformed_json",
            &"x".repeat(10_000),
            &hostile,
            source(),
            "mm",
        );
        assert!(r.payload.len() <= REJECT_PAYLOAD_MAX && r.payload.starts_with('\u{FFFD}'));
        assert!(r.payload_truncated && r.payload_bytes == 350_000);
        assert_eq!(r.detail.len(), REJECT_DETAIL_MAX);
        assert!(serde_json::to_vec(&r).unwrap().len() < 8 * 1024);
        // SHA-256 of the whole input (sha256sum of 350 000 0xFF bytes).
        assert_eq!(
            r.payload_sha256,
            "59f8315fd1c7fede17f83d8f0eadd582143b2edfad4352b5b0411d7e195a3e00"
        );
        let small = RejectMessage::new("malformed_json", "d", b"{not json", source(), "mm");
        assert_eq!(small.payload, "{not json");
        assert!(!small.payload_truncated && small.payload_bytes == 9);
        assert_eq!(
            small.payload_sha256,
            "92072df399cb74703f8e86f450d552bc0bb01eeeb98a90985a1b7772c8fd0016"
        );
        // A multi-byte character straddling the limit is left out whole.
        let mut text = "a".repeat(REJECT_PAYLOAD_MAX - 1).into_bytes();
        text.extend("é".as_bytes());
        let r = RejectMessage::new("x", "d", &text, source(), "mm");
        assert_eq!(r.payload.len(), REJECT_PAYLOAD_MAX - 1);
        assert!(r.payload_truncated);
    }

    const SEED: &str = r#"{"id":1000001,"instrument":"TCS","trxn_type":"BUY","quantity":5.0,"price":15.0,"order_timestamp":"2023/03/12, 23:48:37"}"#;

    #[test]
    fn seed_format_is_accepted_as_is() {
        let p = parse_order(SEED.as_bytes()).unwrap();
        let Command::New(n) = p.command else {
            panic!("expected a new order")
        };
        assert_eq!(n.order_id, 1_000_001);
        assert_eq!(n.instrument.as_str(), "TCS");
        assert_eq!(n.side, Side::Buy);
        assert_eq!(n.quantity, Decimal::new(50, 1));
        assert_eq!(n.price, Some(Decimal::new(150, 1)));
        assert_eq!(
            (n.order_type, n.time_in_force, n.post_only),
            (OrderType::Limit, TimeInForce::Gtc, false)
        );
        assert_eq!(n.trader.as_str(), DEFAULT_TRADER);
        assert_eq!(p.event_time_ms, Some(1_678_664_917_000));
    }

    #[test]
    fn decimals_are_exact_never_floats() {
        let msg = r#"{"id":1,"instrument":"TCS","trxn_type":"SELL","quantity":"3","price":0.1000000000000000055511151231257827}"#;
        let Command::New(n) = parse_order(msg.as_bytes()).unwrap().command else {
            panic!()
        };
        assert_eq!(
            n.price.unwrap().to_string(),
            "0.1000000000000000055511151231"
        );
        assert_eq!(n.quantity, Decimal::from(3));
        let m = TradeMessage {
            trade_id: 1,
            instrument: "TCS".into(),
            price: Decimal::new(1505, 2),
            quantity: Decimal::new(30, 1),
            buyer: "a".into(),
            seller: "b".into(),
            buy_order_id: 1,
            sell_order_id: 2,
            aggressor: "BUY".into(),
            ts_ms: 0,
        };
        let json = serde_json::to_string(&m).unwrap();
        assert!(json.contains(r#""price":15.05,"quantity":3.0"#), "{json}");
        assert_eq!(serde_json::from_str::<TradeMessage>(&json).unwrap(), m);
    }

    #[test]
    fn extended_cancel_and_amend_forms() {
        let p = parse_order(br#"{"id":7,"instrument":"TCS","trxn_type":"sell","quantity":1,"order_type":"MARKET","time_in_force":"FOK","trader":"T9"}"#).unwrap();
        let Command::New(n) = p.command else { panic!() };
        assert_eq!(
            (n.side, n.order_type, n.time_in_force, n.price),
            (Side::Sell, OrderType::Market, TimeInForce::Fok, None)
        );
        assert_eq!(p.event_time_ms, None);
        let c =
            parse_order(br#"{"action":"CANCEL","id":7,"instrument":"TCS","trader":"T9"}"#).unwrap();
        assert!(
            matches!(c.command, Command::Cancel(c) if c.order_id == 7 && c.trader.as_str() == "T9")
        );
        let a = parse_order(
            br#"{"action":"amend","id":7,"instrument":"TCS","trader":"T9","price":"15.05"}"#,
        )
        .unwrap();
        assert!(
            matches!(a.command, Command::Amend(a) if a.price == Some(Decimal::new(1505, 2)) && a.quantity.is_none())
        );
        // A new total (FIX OrderQty) instead of the open quantity; written back the same way.
        let t = parse_order(
            br#"{"action":"AMEND","id":7,"instrument":"TCS","trader":"T9","total_quantity":12}"#,
        )
        .unwrap();
        let Command::Amend(amend) = t.command else {
            panic!()
        };
        assert_eq!(
            (amend.quantity, amend.total),
            (Some(Decimal::from(12)), true)
        );
        let back = serde_json::to_string(&OrderMessage::from_command(&t.command, 0)).unwrap();
        assert!(
            back.contains(r#""total_quantity":12"#) && !back.contains(r#""quantity""#),
            "{back}"
        );
        for bad in [
            &br#"{"action":"AMEND","id":7,"instrument":"TCS","quantity":3,"total_quantity":12}"#[..],
            br#"{"id":7,"instrument":"TCS","trxn_type":"BUY","quantity":3,"total_quantity":12}"#,
        ] {
            assert_eq!(parse_order(bad).unwrap_err().reason, "invalid_field");
        }
    }

    #[test]
    fn bad_input_gets_a_specific_reason() {
        let cases: &[(&[u8], &str)] = &[
            (b"{not json", "malformed_json"),
            (b"", "malformed_json"),
            (b"\xff\xfe", "malformed_json"),
            (br#"{"id":"x","instrument":"TCS"}"#, "invalid_field"),
            (br#"{"id":-1,"instrument":"TCS","trxn_type":"BUY","quantity":1}"#, "invalid_field"),
            (br#"{"instrument":"TCS","trxn_type":"BUY","quantity":1}"#, "invalid_field"),
            (br#"{"id":1,"instrument":"TCS","trxn_type":"BUY","quantity":1,"prise":3}"#, "invalid_field"),
            (br#"{"id":1,"instrument":"TCS","trxn_type":"HOLD","quantity":1}"#, "invalid_side"),
            (br#"{"id":1,"instrument":"TCS","quantity":1}"#, "missing_field"),
            (br#"{"id":1,"instrument":"TCS","trxn_type":"BUY"}"#, "missing_field"),
            (br#"{"id":1,"instrument":"TCS","trxn_type":"BUY","quantity":"lots"}"#, "invalid_quantity"),
            (br#"{"id":1,"instrument":"TCS","trxn_type":"BUY","quantity":1,"price":true}"#, "invalid_price"),
            (br#"{"id":1,"instrument":"TCS","trxn_type":"BUY","quantity":1,"order_type":"STOP"}"#, "invalid_order_type"),
            (br#"{"id":1,"instrument":"TCS","trxn_type":"BUY","quantity":1,"time_in_force":"DAY"}"#, "invalid_time_in_force"),
            (br#"{"id":1,"instrument":"TCS","trxn_type":"BUY","quantity":1,"order_timestamp":"yesterday"}"#, "invalid_timestamp"),
            (br#"{"id":1,"instrument":"A_VERY_LONG_SYMBOL_NAME","trxn_type":"BUY","quantity":1}"#, "unknown_instrument"),
            (br#"{"id":1,"instrument":"TCS","trader":"has space","trxn_type":"BUY","quantity":1}"#, "invalid_trader"),
            (br#"{"action":"DELETE","id":1,"instrument":"TCS"}"#, "invalid_action"),
            (br#"[1,2,3]"#, "invalid_field"),
        ];
        for (input, reason) in cases {
            let err = parse_order(input).unwrap_err();
            assert_eq!(
                err.reason,
                *reason,
                "{} -> {err}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn timestamp_fast_path_agrees_with_chrono() {
        for t in [
            "2023/03/12, 23:48:37",
            "2023/03/12, 23:48:37.5",
            "2023/03/12, 23:48:37.25",
            "2024/02/29, 00:00:00.001",
            "1999/12/31, 23:59:59.999",
        ] {
            let chrono = NaiveDateTime::parse_from_str(t, ORDER_TIMESTAMP_FORMAT)
                .unwrap()
                .and_utc()
                .timestamp_millis();
            assert_eq!(parse_seed_timestamp(t.as_bytes()), Some(chrono), "{t}");
        }
        for bad in [
            "2023/13/12, 23:48:37",
            "2023/02/30, 00:00:00",
            "2023/03/12, 24:00:00",
            "2023/03/12 23:48:37",
            "2023/03/12, 23:48:3x",
            "2023/03/12, 23:48:37.1234",
        ] {
            assert_eq!(parse_seed_timestamp(bad.as_bytes()), None, "{bad}");
        }
        assert_eq!(
            parse_timestamp("2023-03-12T23:48:37.100Z"),
            Some(1_678_664_917_100)
        );
        assert_eq!(
            parse_timestamp("2023/03/12, 23:48:37.1234"),
            Some(1_678_664_917_123),
            "chrono handles longer fractions"
        );
    }

    #[test]
    fn generated_messages_round_trip_through_the_parser() {
        let cmd = parse_order(SEED.as_bytes()).unwrap().command;
        let msg = OrderMessage::from_command(&cmd, 1_678_664_917_250);
        let json = serde_json::to_vec(&msg).unwrap();
        let back = parse_order(&json).unwrap();
        assert_eq!(back.event_time_ms, Some(1_678_664_917_250));
        let Command::New(mut n) = back.command else {
            panic!()
        };
        assert_eq!(n.trader.as_str(), DEFAULT_TRADER);
        n.trader = FixedStr::new(DEFAULT_TRADER).unwrap();
        assert_eq!(Command::New(n), cmd);
        assert_eq!(
            format_timestamp(1_678_664_917_250),
            "2023/03/12, 23:48:37.250"
        );
    }

    #[test]
    fn the_hand_written_trade_is_byte_for_byte_the_serde_one() {
        let instruments = crate::config::load_instruments(None).unwrap();
        let mut engine = kappa_engine::Engine::new(instruments.clone());
        let mut events = Vec::new();
        let mut trades = Vec::new();
        let cfg = crate::generator::FlowConfig {
            count: 20_000,
            seed: 3,
            ..Default::default()
        };
        let generated = crate::generator::flow(&cfg, &instruments).map(|(_, p, _)| p);
        // Traders whose names need escaping, and prices/quantities with fractions.
        let odd = [
            r#"{"id":1,"instrument":"TCS","trxn_type":"SELL","quantity":3,"price":"15.05","trader":"q\"t"}"#,
            r#"{"id":2,"instrument":"TCS","trxn_type":"BUY","quantity":2,"price":"15.10","trader":"b\\s"}"#,
        ]
        .map(|m| m.as_bytes().to_vec());
        for payload in odd.into_iter().chain(generated) {
            let Ok(p) = parse_order(&payload) else {
                continue;
            };
            engine.apply_into(&p.command, &mut events);
            for e in events.drain(..) {
                if let kappa_engine::EventBody::Trade(t) = e.body {
                    trades.push(t);
                }
            }
        }
        assert!(trades.len() > 1000, "{}", trades.len());
        assert!(trades[0].buyer().1.as_str() == "b\\s" && trades[0].seller().1.as_str() == "q\"t");
        let mut out = Vec::new();
        for (i, t) in trades.iter().enumerate() {
            let (partition, ts) = ((i % 12) as i32, 1_700_000_000_000 + i as i64);
            out.clear();
            write_trade(t, &instruments, partition, ts, &mut out);
            let serde =
                serde_json::to_vec(&TradeMessage::new(t, &instruments, partition, ts)).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&serde),
                "trade {i}"
            );
        }
    }

    #[test]
    fn the_hand_written_order_event_is_byte_for_byte_the_serde_one() {
        let instruments = crate::config::load_instruments(None).unwrap();
        let mut engine = kappa_engine::Engine::new(instruments.clone());
        let mut events = Vec::new();
        let cfg = crate::generator::FlowConfig {
            count: 20_000,
            seed: 5,
            ..Default::default()
        };
        let odd = [r#"{"id":1,"instrument":"TCS","trxn_type":"SELL","quantity":3,"price":"15.05","trader":"q\"t"}"#
            .as_bytes()
            .to_vec()];
        let generated = crate::generator::flow(&cfg, &instruments).map(|(_, p, _)| p);
        let (mut out, mut checked, mut with_terms, mut cancelled, mut fills) =
            (Vec::new(), 0, 0, 0, 0);
        for (i, payload) in odd.into_iter().chain(generated).enumerate() {
            let Ok(p) = parse_order(&payload) else {
                continue;
            };
            engine.apply_into(&p.command, &mut events);
            // Paired as the match maker pairs them: an acceptance gives its terms to the next
            // update of the same order.
            let (mut accepted, mut fill) = (None, None);
            for e in events.drain(..) {
                match e.body {
                    kappa_engine::EventBody::Accepted(a) => accepted = Some(a),
                    kappa_engine::EventBody::Trade(t) => fill = Some(t),
                    kappa_engine::EventBody::Order(u) => {
                        let terms = accepted.filter(|a| a.order_id == u.order_id);
                        accepted = accepted.filter(|_| terms.is_none());
                        let ts = 1_700_000_000_000 + i as i64;
                        let mut msg = OrderEventMessage::from_update(&u, &instruments, ts);
                        if let Some(a) = &terms {
                            msg.with_terms(a);
                            with_terms += 1;
                        }
                        let last = fill.filter(|_| {
                            matches!(
                                u.status,
                                kappa_engine::OrderStatus::PartiallyFilled
                                    | kappa_engine::OrderStatus::Filled
                            )
                        });
                        if let Some(t) = &last {
                            msg.with_last(t, &instruments);
                            fills += 1;
                        }
                        cancelled += usize::from(msg.reason.is_some());
                        out.clear();
                        write_order_update(
                            &u,
                            terms.as_ref(),
                            last.as_ref(),
                            &instruments,
                            ts,
                            &mut out,
                        );
                        assert_eq!(
                            String::from_utf8_lossy(&out),
                            String::from_utf8_lossy(&serde_json::to_vec(&msg).unwrap()),
                            "update {checked}"
                        );
                        checked += 1;
                    }
                    _ => {}
                }
            }
        }
        assert!(
            checked > 10_000 && with_terms > 1_000 && cancelled > 100 && fills > 1_000,
            "{checked} {with_terms} {cancelled} {fills}"
        );
    }
}
