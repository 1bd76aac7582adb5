//! The market-view job (a real process) against the embedded broker and a real Kafka, with
//! generated flow: every
//! query endpoint is compared with what is on the topics, order entry publishes exactly the valid
//! requests (and the match maker acts on them), errors are JSON with the right status, and the
//! live stream sends a snapshot then deltas.

mod support;

use kappa_exchange::runtime::kafka::{partition_count, read_topic, Reader};
use kappa_exchange::wire::{
    AnalyticsKind, BarMessage, BookMessage, OrderEventMessage, OrderMessage, PnlMessage,
    TotalsMessage, TradeMessage,
};
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};

use kappa_exchange::topics::TopicLayout;
use std::time::{Duration, Instant};
use support::*;

on_both_brokers!(
    market_view_serves_the_topics_and_accepts_orders,
    market_view_metrics_count_order_entry_outcomes,
    market_view_caps_live_streams_and_retries_never_create_a_second_order,
);

/// Market-view's API, as one trader (the API key sent with every request) or anonymously.
#[derive(Clone)]
struct Api {
    base: String,
    /// The ops port (metrics, stats).
    ops: String,
    agent: ureq::Agent,
    key: Option<String>,
    /// Trader → API key, and the key file market-view reads.
    keys: HashMap<String, String>,
    key_file: std::path::PathBuf,
}

/// Traders with a key from the start.
const TRADERS: [&str; 3] = ["API01", "RETRY", "SOMEONE"];

impl Api {
    fn request(&self, method: &str, path: &str) -> ureq::Request {
        let r = self.agent.request(method, &format!("{}{path}", self.base));
        match &self.key {
            Some(k) => r.set("authorization", &format!("Bearer {k}")),
            None => r,
        }
    }

    fn get(&self, path: &str) -> (u16, Value) {
        Self::answer(self.request("GET", path).call())
    }

    fn post(&self, path: &str, body: &str) -> (u16, Value) {
        Self::answer(
            self.request("POST", path)
                .set("content-type", "application/json")
                .send_string(body),
        )
    }

    /// The same API as `trader`.
    fn as_trader(&self, trader: &str) -> Api {
        let key = self
            .keys
            .get(trader)
            .unwrap_or_else(|| panic!("no key for {trader}"));
        Api {
            key: Some(key.clone()),
            ..self.clone()
        }
    }

    /// The same API without a credential.
    fn anonymous(&self) -> Api {
        Api {
            key: None,
            ..self.clone()
        }
    }

    /// Gives `trader` a key while the server runs (it re-reads its key file) and acts as them.
    fn add_trader(&mut self, trader: &str) -> Api {
        let (key, _) =
            kappa_exchange::serving::auth::add_key(Some(&self.key_file), trader, None).unwrap();
        self.keys.insert(trader.to_string(), key);
        let api = self.as_trader(trader);
        api.until("/me", |s, v| s == 200 && v["trader"] == trader);
        api
    }

    /// An ops endpoint's text.
    fn ops_text(&self, path: &str) -> String {
        self.agent
            .get(&format!("{}{path}", self.ops))
            .call()
            .unwrap()
            .into_string()
            .unwrap()
    }

    fn answer(r: Result<ureq::Response, ureq::Error>) -> (u16, Value) {
        let resp = match r {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("request failed: {e}"),
        };
        let status = resp.status();
        let body: Value = resp.into_json().expect("every answer is JSON");
        (status, body)
    }

    /// Polls `path` until `ok` holds for its JSON (or fails after 30 s).
    fn until(&self, path: &str, ok: impl Fn(u16, &Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (s, v) = self.get(path);
            if ok(s, &v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{path} never satisfied the condition: {s} {v}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn high_watermark(reader: &Reader, topic: &str) -> i64 {
    (0..partition_count(reader, topic).unwrap())
        .map(|q| {
            reader
                .fetch_watermarks(topic, q, Duration::from_secs(5))
                .unwrap()
                .1
        })
        .sum()
}

fn d(v: &Value) -> Decimal {
    v.to_string().trim_matches('"').parse().unwrap()
}

fn market_view_serves_the_topics_and_accepts_orders(on: On) {
    let p = start(on, TopicLayout::default());
    // Paced: on a real broker the exchange's time is each order's arrival, and the 100 ms bars
    // need some of it.
    publish_at(&p, &flow(8_000, 5), 4_000.0);
    let mut mm = match_maker(&p, &["--idle-exit-ms", "1500"]);
    wait(&mut mm, Duration::from_secs(120));
    let until_end = ["--until-end", "--window", "100ms"];
    let mut sma = job(&p, env!("CARGO_BIN_EXE_sma-calculator"), &until_end);
    let mut profit = job(&p, env!("CARGO_BIN_EXE_profit-calculator"), &until_end);
    wait(&mut sma, Duration::from_secs(120));
    wait(&mut profit, Duration::from_secs(120));

    // Now the serving job, and a live match maker (it rebuilds its books by replay) for orders
    // placed through the API.
    let (mut api, _children) = serve(&p, &["--push-interval-ms", "50"], true);
    let reader = reader(&p);
    // Records, not offsets: transaction markers take offsets too.
    let mut events_on_topic = 0;
    read_topic(&reader, &p.topic("order-events"), |_| events_on_topic += 1).unwrap();
    let stats: Value = serde_json::from_str(&api.ops_text("/stats")).unwrap();
    assert_eq!(
        stats["feed"]["order_events"].as_i64(),
        Some(events_on_topic),
        "{stats}"
    );
    assert_eq!(stats["feed"]["undecodable"].as_i64(), Some(0), "{stats}");

    // --- Queries equal what is on the topics.
    let mut books: HashMap<String, BookMessage> = HashMap::new();
    let mut trades: Vec<TradeMessage> = Vec::new();
    let mut events: HashMap<u64, OrderEventMessage> = HashMap::new();
    read_topic(&reader, &p.topic("book"), |m| {
        let b: BookMessage = serde_json::from_slice(m.payload().unwrap()).unwrap();
        books.insert(b.instrument.clone(), b);
    })
    .unwrap();
    read_topic(&reader, &p.topic("trades"), |m| {
        trades.push(serde_json::from_slice(m.payload().unwrap()).unwrap())
    })
    .unwrap();
    read_topic(&reader, &p.topic("order-events"), |m| {
        let e: OrderEventMessage = serde_json::from_slice(m.payload().unwrap()).unwrap();
        events.insert(e.order_id, e);
    })
    .unwrap();
    let (mut bars, mut pnl) = (Vec::new(), HashMap::new());
    let mut totals = kappa_exchange::analytics::leaderboard::Leaderboard::default();
    read_topic(&reader, &p.topic("analytics"), |m| {
        let payload = m.payload().unwrap();
        match serde_json::from_slice::<AnalyticsKind>(payload)
            .unwrap()
            .kind
            .as_str()
        {
            "bar" => bars.push(serde_json::from_slice::<BarMessage>(payload).unwrap()),
            "pnl" => {
                let r: PnlMessage = serde_json::from_slice(payload).unwrap();
                pnl.insert((r.trader.clone(), r.instrument.clone()), r);
            }
            "totals" => {
                totals.apply(serde_json::from_slice::<TotalsMessage>(payload).unwrap());
            }
            _ => {}
        }
    })
    .unwrap();
    let board = totals.board(10);
    assert!(!trades.is_empty() && !bars.is_empty() && !pnl.is_empty() && board.is_some());

    let (s, list) = api.get("/instruments");
    assert_eq!(s, 200);
    let symbols: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["symbol"].as_str().unwrap())
        .collect();
    assert_eq!(&symbols[..3], ["TCS", "INFY", "RELIANCE"]);
    // Each instrument's `orders` partition: its table position mod the partition count.
    let n = partition_count(&reader, &p.topic("orders")).unwrap() as u64;
    for (k, i) in list.as_array().unwrap().iter().enumerate() {
        assert_eq!(i["partition"].as_u64(), Some(k as u64 % n), "{i}");
    }
    let tcs_trades: Vec<&TradeMessage> = trades.iter().filter(|t| t.instrument == "TCS").collect();
    assert_eq!(list[0]["trades"].as_u64(), Some(tcs_trades.len() as u64));
    assert_eq!(d(&list[0]["last"]), tcs_trades.last().unwrap().price);

    let (s, book) = api.get("/book/TCS");
    assert_eq!(s, 200);
    let expected = &books["TCS"];
    assert_eq!(book["as_of_offset"].as_i64(), Some(expected.as_of_offset));
    assert_eq!(serde_json::to_value(&expected.bids).unwrap(), book["bids"]);
    assert_eq!(serde_json::to_value(&expected.asks).unwrap(), book["asks"]);
    let (bid, ask) = (expected.bids[0].price, expected.asks[0].price);
    assert_eq!(d(&book["spread"]), ask - bid);
    assert_eq!(d(&book["mid"]), (ask + bid) / Decimal::TWO);
    let (_, top1) = api.get("/book/TCS?depth=1");
    assert_eq!(top1["bids"].as_array().unwrap().len(), 1);

    let (s, tape) = api.get("/trades/TCS?limit=20");
    assert_eq!(s, 200);
    let newest: Vec<Value> = tcs_trades
        .iter()
        .rev()
        .take(20)
        .map(|t| serde_json::to_value(t).unwrap())
        .collect();
    assert_eq!(tape.as_array().unwrap(), &newest);

    let (s, served_bars) = api.get("/bars/INFY?limit=5");
    assert_eq!(s, 200);
    let mut infy: Vec<&BarMessage> = bars.iter().filter(|b| b.instrument == "INFY").collect();
    infy.sort_by_key(|b| b.end_ms);
    let served = served_bars.as_array().unwrap();
    assert_eq!(served.len(), 5.min(infy.len()));
    let last_bar = infy.last().unwrap();
    assert_eq!(
        served.last().unwrap()["end_ms"].as_i64(),
        Some(last_bar.end_ms)
    );
    assert_eq!(d(&served.last().unwrap()["close"]), last_bar.close);
    assert!(
        served
            .iter()
            .all(|b| b["sma"].as_array().is_some_and(|s| !s.is_empty())),
        "bars carry their SMAs: {served_bars}"
    );

    let ((trader, _), _) = pnl.iter().next().unwrap();
    // A trader's P&L needs that trader's key (given while the server runs: the key file is
    // re-read), and no other.
    let (s, v) = api.get(&format!("/pnl/{trader}"));
    assert_eq!((s, v["error"].as_str()), (403, Some("forbidden")), "{v}");
    let (s, v) = api.anonymous().get(&format!("/pnl/{trader}"));
    assert_eq!(
        (s, v["error"].as_str()),
        (401, Some("unauthenticated")),
        "{v}"
    );
    let (s, view) = api.add_trader(trader).get(&format!("/pnl/{trader}"));
    assert_eq!(s, 200);
    let rows: Vec<&PnlMessage> = pnl.values().filter(|r| &r.trader == trader).collect();
    assert_eq!(view["positions"].as_array().unwrap().len(), rows.len());
    assert_eq!(
        d(&view["realized"]),
        rows.iter().map(|r| r.realized).sum::<Decimal>()
    );
    let (s, served_board) = api.get("/leaderboard");
    assert_eq!(s, 200);
    assert_eq!(
        served_board,
        serde_json::to_value(board.as_ref().unwrap()).unwrap()
    );

    // The history: the trader's total after each window with a row, oldest first.
    let mut expected_history: Vec<(i64, Decimal)> = Vec::new();
    let mut latest: HashMap<String, Decimal> = HashMap::new();
    read_topic(&reader, &p.topic("analytics"), |m| {
        let payload = m.payload().unwrap();
        if serde_json::from_slice::<AnalyticsKind>(payload)
            .unwrap()
            .kind
            != "pnl"
        {
            return;
        }
        let r: PnlMessage = serde_json::from_slice(payload).unwrap();
        if &r.trader != trader {
            return;
        }
        latest.insert(r.instrument.clone(), r.total);
        let total = latest.values().sum();
        match expected_history.last_mut() {
            // A row of an earlier window (its partition lagging) updates the newest point.
            Some(last) if last.0 >= r.end_ms => last.1 = total,
            _ => expected_history.push((r.end_ms, total)),
        }
    })
    .unwrap();
    let owner_of_pnl = api.as_trader(trader);
    let (s, history) = owner_of_pnl.get(&format!("/pnl/{trader}/history"));
    assert_eq!(s, 200, "{history}");
    assert_eq!(history["trader"], trader.as_str());
    let points: Vec<(i64, Decimal)> = history["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["end_ms"].as_i64().unwrap(), d(&p["total"])))
        .collect();
    assert_eq!(points, expected_history);
    assert_eq!(points.last().unwrap().1, d(&view["total"]));
    let (_, tail) = owner_of_pnl.get(&format!("/pnl/{trader}/history?limit=2"));
    let tail: Vec<i64> = tail["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["end_ms"].as_i64().unwrap())
        .collect();
    let newest_two: Vec<i64> = expected_history
        .iter()
        .rev()
        .take(2)
        .rev()
        .map(|p| p.0)
        .collect();
    assert_eq!(tail, newest_two);
    // Another trader's history is refused like their P&L, and needs a key.
    let (s, v) = api.get(&format!("/pnl/{trader}/history"));
    assert_eq!((s, v["error"].as_str()), (403, Some("forbidden")), "{v}");
    let (s, v) = api.anonymous().get(&format!("/pnl/{trader}/history"));
    assert_eq!(
        (s, v["error"].as_str()),
        (401, Some("unauthenticated")),
        "{v}"
    );

    let (id, ev) = events.iter().find(|(_, e)| e.status == "FILLED").unwrap();
    let (s, v) = api.get(&format!("/orders/{id}"));
    assert_eq!((s, v["error"].as_str()), (403, Some("forbidden")), "{v}");
    let (s, status) = api.add_trader(&ev.trader).get(&format!("/orders/{id}"));
    assert_eq!((s, status), (200, serde_json::to_value(ev).unwrap()));

    // --- A trader's orders: only the key's trader's, newest (first seen) first, each with its
    // last status — where a refused command about a known order is not its status.
    const OPEN: [&str; 4] = ["ACCEPTED", "NEW", "PARTIALLY_FILLED", "AMENDED"];
    let mut first_seen: HashMap<String, Vec<u64>> = HashMap::new();
    let mut kept: HashMap<u64, OrderEventMessage> = HashMap::new();
    read_topic(&reader, &p.topic("order-events"), |m| {
        let e: OrderEventMessage = serde_json::from_slice(m.payload().unwrap()).unwrap();
        if e.status == "REJECTED" && kept.contains_key(&e.order_id) {
            return;
        }
        if !kept.contains_key(&e.order_id) {
            first_seen
                .entry(e.trader.clone())
                .or_default()
                .push(e.order_id);
        }
        kept.insert(e.order_id, e);
    })
    .unwrap();
    // A trader with more than 5 orders, open ones and finished ones.
    let (lister, seen) = first_seen
        .iter()
        .find(|(_, ids)| {
            let open = ids
                .iter()
                .filter(|id| OPEN.contains(&kept[*id].status.as_str()))
                .count();
            ids.len() > 5 && open > 0 && open < ids.len()
        })
        .expect("a trader with open and finished orders");
    let newest = |open_only: bool, limit: usize| -> Vec<Value> {
        seen.iter()
            .rev()
            .map(|id| &kept[id])
            .filter(|e| !open_only || OPEN.contains(&e.status.as_str()))
            .take(limit)
            .map(|e| serde_json::to_value(e).unwrap())
            .collect()
    };
    let lister = api.add_trader(lister);
    for (query, open_only, limit) in [
        ("", false, 100),
        ("?limit=5", false, 5),
        ("?limit=500&status=all", false, 500),
        ("?status=open&limit=500", true, 500),
    ] {
        let (s, listed) = lister.get(&format!("/orders{query}"));
        assert_eq!(s, 200, "{query}: {listed}");
        assert_eq!(
            listed.as_array().unwrap(),
            &newest(open_only, limit),
            "{query}"
        );
    }
    // No other trader's: API01 has placed nothing yet.
    let (s, none) = api.get("/orders");
    assert_eq!((s, none), (200, json!([])));

    // --- Errors: JSON bodies with the right status.
    let cases: [(&str, u16, &str); 17] = [
        ("/book/NOPE", 404, "unknown_instrument"),
        ("/book/TCS?depth=0", 400, "invalid_parameter"),
        ("/book/TCS?depth=6", 400, "invalid_parameter"),
        ("/book/TCS?depht=3", 400, "invalid_parameter"),
        ("/trades/TCS?limit=abc", 400, "invalid_parameter"),
        ("/orders/abc", 400, "invalid_order_id"),
        ("/orders/424242", 404, "unknown_order"),
        ("/orders?limit=0", 400, "invalid_parameter"),
        ("/orders?limit=501", 400, "invalid_parameter"),
        ("/orders?limit=-1", 400, "invalid_parameter"),
        ("/orders?status=closed", 400, "invalid_parameter"),
        // The trader is the key's: there is no asking for another's.
        ("/orders?trader=T0001", 400, "invalid_parameter"),
        ("/pnl/API01", 404, "unknown_trader"),
        ("/pnl/API01/history", 404, "unknown_trader"),
        ("/pnl/API01/history?limit=0", 400, "invalid_parameter"),
        ("/pnl/API01/history?from=0", 400, "invalid_parameter"),
        ("/no/such/thing", 404, "not_found"),
    ];
    for (path, status, error) in cases {
        let (s, v) = api.get(path);
        assert_eq!(
            (s, v["error"].as_str()),
            (status, Some(error)),
            "{path}: {v}"
        );
    }
    let (s, v) = api.anonymous().get("/orders");
    assert_eq!(
        (s, v["error"].as_str()),
        (401, Some("unauthenticated")),
        "{v}"
    );

    // --- Order entry: refused requests are never published.
    let orders_before = high_watermark(&reader, &p.topic("orders"));
    let refused = [
        (
            r#"{"instrument":"TCS","trxn_type":"BUY","quantity":1,"price":15.001}"#,
            "price_off_tick",
        ),
        (
            r#"{"instrument":"NOPE","trxn_type":"BUY","quantity":1,"price":1}"#,
            "unknown_instrument",
        ),
        (
            r#"{"instrument":"TCS","trxn_type":"BUY","quantity":1}"#,
            "price_missing",
        ),
        ("not json", "malformed_json"),
    ];
    for (body, reason) in refused {
        let (s, v) = api.post("/orders", body);
        assert_eq!((s, v["error"].as_str()), (400, Some(reason)), "{body}: {v}");
    }
    let (s, v) = api.post("/orders", &"x".repeat(20_000));
    assert_eq!((s, v["error"].as_str()), (413, Some("invalid_body")), "{v}");
    assert_eq!(
        high_watermark(&reader, &p.topic("orders")),
        orders_before,
        "a refused order was published"
    );

    // Open the live stream before trading so the delta can be seen.
    let stream = api
        .agent
        .get(&format!("{}/stream/TCS", api.base))
        .call()
        .unwrap();
    let mut lines = BufReader::new(stream.into_reader()).lines();
    let mut next_event = move || -> (String, Value) {
        let (mut name, mut data) = (String::new(), String::new());
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(n) = line.strip_prefix("event: ") {
                name = n.to_string();
            } else if let Some(d) = line.strip_prefix("data: ") {
                data.push_str(d);
            } else if line.is_empty() && !name.is_empty() {
                return (name, serde_json::from_str(&data).unwrap());
            }
        }
        panic!("stream ended");
    };
    let (name, snapshot) = next_event();
    assert_eq!(name, "snapshot");
    // The book as of the topic: the one read above, or a newer copy the live match maker
    // republished after its recovery in the meantime (same levels, a later offset).
    let mut latest = expected.as_of_offset;
    read_topic(&reader, &p.topic("book"), |m| {
        let b: BookMessage = serde_json::from_slice(m.payload().unwrap()).unwrap();
        if b.instrument == "TCS" {
            latest = b.as_of_offset;
        }
    })
    .unwrap();
    let served = snapshot["book"]["as_of_offset"].as_i64();
    assert!(
        served == Some(expected.as_of_offset) || served == Some(latest),
        "{served:?} vs {} / {latest}",
        expected.as_of_offset
    );

    // A marketable order from the API trades against the book.
    let buy = json!({"instrument": "TCS", "trxn_type": "BUY", "quantity": 1, "price": ask, "time_in_force": "IOC"});
    let (s, placed) = api.post("/orders", &buy.to_string());
    assert_eq!(s, 202, "{placed}");
    let id = placed["id"].as_u64().unwrap();
    assert_eq!(
        high_watermark(&reader, &p.topic("orders")),
        orders_before + 1
    );
    let filled = api.until(&format!("/orders/{id}"), |s, v| {
        s == 200 && v["status"] == "FILLED"
    });
    assert_eq!(d(&filled["filled"]), Decimal::ONE);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (name, delta) = next_event();
        assert_eq!(name, "delta");
        let mine = delta["trades"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| t["buy_order_id"].as_u64() == Some(id));
        if mine {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the API order's trade never reached the stream"
        );
    }

    // A resting order can be cancelled once, by its owner: not by another trader's key, nor by
    // naming another trader in the body.
    let rest = json!({"id": 77_000_001u64, "instrument": "TCS", "trxn_type": "BUY", "quantity": 2, "price": "1.00"});
    let (s, placed) = api.post("/orders", &rest.to_string());
    assert_eq!((s, placed["id"].as_u64()), (202, Some(77_000_001)));
    let resting = api.until("/orders/77000001", |s, v| s == 200 && v["status"] == "NEW");
    assert_eq!(resting["trader"], "API01");
    let listed_ids = |path: &str, api: &Api| -> Vec<(u64, String)> {
        let (s, v) = api.get(path);
        assert_eq!(s, 200, "{path}: {v}");
        v.as_array()
            .unwrap()
            .iter()
            .map(|o| {
                (
                    o["order_id"].as_u64().unwrap(),
                    o["status"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    assert_eq!(
        listed_ids("/orders", &api),
        vec![(77_000_001, "NEW".to_string()), (id, "FILLED".to_string())]
    );
    assert_eq!(
        listed_ids("/orders?status=open", &api),
        vec![(77_000_001, "NEW".to_string())]
    );
    let someone = api.as_trader("SOMEONE");
    let (s, v) = someone.post("/orders/77000001/cancel", "");
    assert_eq!((s, v["error"].as_str()), (403, Some("not_order_owner")));
    let (s, v) = someone.post("/orders/77000001/amend", r#"{"quantity":1}"#);
    assert_eq!((s, v["error"].as_str()), (403, Some("not_order_owner")));
    let (s, v) = someone.get("/orders/77000001");
    assert_eq!((s, v["error"].as_str()), (403, Some("forbidden")));
    let (s, v) = api.post("/orders/77000001/cancel", r#"{"trader":"SOMEONE"}"#);
    assert_eq!((s, v["error"].as_str()), (403, Some("trader_mismatch")));
    let (s, _) = api.post("/orders/77000001/cancel", "");
    assert_eq!(s, 202);
    let cancelled = api.until("/orders/77000001", |_, v| v["status"] == "CANCELLED");
    assert_eq!(cancelled["reason"], "requested");
    // The list follows; SOMEONE's (refused) cancel and amend made nothing theirs.
    assert_eq!(
        listed_ids("/orders", &api),
        vec![
            (77_000_001, "CANCELLED".to_string()),
            (id, "FILLED".to_string())
        ]
    );
    assert!(listed_ids("/orders?status=open", &api).is_empty());
    assert!(listed_ids("/orders", &someone).is_empty());
    let (s, v) = api.post("/orders/77000001/cancel", "");
    assert_eq!((s, v["error"].as_str()), (400, Some("order_not_active")));

    // What the API published is the canonical orders message.
    let mut last_order = None;
    read_topic(&reader, &p.topic("orders"), |m| {
        if m.key() == Some(b"TCS".as_slice()) {
            last_order = Some(m.payload().unwrap().to_vec());
        }
    })
    .unwrap();
    let msg: OrderMessage = serde_json::from_slice(&last_order.unwrap()).unwrap();
    assert_eq!(
        (msg.action.as_deref(), msg.id),
        (Some("CANCEL"), 77_000_001)
    );
}

fn market_view_metrics_count_order_entry_outcomes(on: On) {
    let p = start(on, TopicLayout::default());
    let (api, _children) = serve(&p, &[], false);
    let order = r#"{"instrument":"TCS","trxn_type":"SELL","quantity":1,"price":99}"#;
    assert_eq!(api.post("/orders", order).0, 202);
    assert_eq!(api.post("/orders", "{}").0, 400);
    assert_eq!(api.post("/orders", r#"{"instrument":"TCS"}"#).0, 400);
    // Not on the public port.
    assert_eq!(api.get("/metrics").0, 404);
    let text = api.ops_text("/metrics");
    for line in [
        "kappa_api_orders_total{job=\"market-view\",outcome=\"published\"} 1",
        "kappa_api_orders_total{job=\"market-view\",outcome=\"refused\"} 2",
        "kappa_ready{job=\"market-view\"} 1",
        "kappa_undecodable_total{job=\"market-view\"} 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
}

/// Starts market-view with `args` (and a live match maker for orders placed through the API,
/// when `match_maker` is set) and waits until it is ready.
fn serve(p: &Pipeline, args: &[&str], with_match_maker: bool) -> (Api, Killed) {
    serve_logged(p, args, with_match_maker, None)
}

/// [`serve`], with market-view's logs (JSON lines, audit included) written to `log`.
fn serve_logged(
    p: &Pipeline,
    args: &[&str],
    with_match_maker: bool,
    log: Option<&std::path::Path>,
) -> (Api, Killed) {
    let (port, ops_port) = (free_port(), free_port());
    let bind = format!("127.0.0.1:{port}");
    let ops = format!("127.0.0.1:{ops_port}");
    let dir = std::env::temp_dir().join(format!("kappa-serving-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("keys");
    let keys: HashMap<String, String> = TRADERS
        .iter()
        .map(|t| {
            let (key, _) =
                kappa_exchange::serving::auth::add_key(Some(&key_file), t, None).unwrap();
            (t.to_string(), key)
        })
        .collect();
    let key_arg = key_file.to_str().unwrap();
    let mut all = vec![
        "--bind",
        bind.as_str(),
        "--ops-bind",
        &ops,
        "--api-keys",
        key_arg,
    ];
    all.extend_from_slice(args);
    let market_view = match log {
        None => job(p, env!("CARGO_BIN_EXE_market-view"), &all),
        Some(log) => std::process::Command::new(env!("CARGO_BIN_EXE_market-view"))
            .args(["--brokers", p.broker.bootstrap(), "--log-json"])
            .args(&all)
            .env("KAFKA_TOPIC_PREFIX", p.prefix())
            .env("RUST_LOG", "info,rdkafka=warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap(),
    };
    let mut children = Killed(vec![market_view]);
    if with_match_maker {
        children.0.push(match_maker(p, &[]));
    }
    let api = Api {
        base: format!("http://127.0.0.1:{port}"),
        ops: format!("http://{ops}"),
        agent: ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(10))
            .build(),
        key: keys.get("API01").cloned(),
        keys,
        key_file,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !matches!(api.agent.get(&format!("{}/readyz", api.base)).call(), Ok(r) if r.status() == 200)
    {
        assert!(Instant::now() < deadline, "market-view never became ready");
        if let Some(status) = children.0[0].try_wait().unwrap() {
            panic!("market-view exited: {status}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    (api, children)
}

fn market_view_caps_live_streams_and_retries_never_create_a_second_order(on: On) {
    let p = start(on, TopicLayout::default());
    let (api, _children) = serve(
        &p,
        &["--max-streams", "2", "--push-interval-ms", "50"],
        true,
    );

    // Two streams fit; the third is refused 503 with Retry-After; closing one frees its slot.
    let open = || {
        api.agent
            .get(&format!("{}/stream/TCS", api.base))
            .call()
            .map_err(Box::new)
    };
    let first = open().expect("first stream");
    let second = open().expect("second stream");
    match open() {
        Err(e) if matches!(*e, ureq::Error::Status(503, _)) => {
            let ureq::Error::Status(_, r) = *e else {
                unreachable!()
            };
            assert_eq!(r.header("retry-after"), Some("5"));
            let v: Value = r.into_json().unwrap();
            assert_eq!(v["error"], "too_many_streams");
        }
        other => panic!(
            "third stream: expected 503, got {:?}",
            other.map(|r| r.status())
        ),
    }
    drop(first);
    // The server notices a closed connection when it next writes to it: make the book change.
    let resting = json!({"instrument": "TCS", "trxn_type": "SELL", "quantity": 1, "price": 900});
    assert_eq!(api.post("/orders", &resting.to_string()).0, 202);
    let deadline = Instant::now() + Duration::from_secs(30);
    let third = loop {
        match open() {
            Ok(r) => break r,
            Err(e) if matches!(*e, ureq::Error::Status(503, _)) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100))
            }
            Err(e) => panic!("stream after a close: {e}"),
        }
    };
    drop((second, third));

    // A request with a client order id, sent three times (body field, then the header form):
    // one order id, one message on `orders`, and the order stays NEW (the engine's duplicate
    // reject of a retry that raced the first never replaces its status).
    let api = api.as_trader("RETRY");
    let body = json!({"instrument": "TCS", "trxn_type": "BUY", "quantity": 2, "price": 50,
                      "client_order_id": "order-42"});
    let (s, a) = api.post("/orders", &body.to_string());
    assert_eq!(s, 202, "{a}");
    let id = a["id"].as_u64().unwrap();
    assert!((1 << 52..1 << 53).contains(&id), "an API id: {id}");
    let (s, b) = api.post("/orders", &body.to_string());
    assert!(s == 200 || s == 202, "{s} {b}");
    assert_eq!(
        (b["id"].as_u64(), b["duplicate_request"].as_bool()),
        (Some(id), Some(true))
    );
    api.until(&format!("/orders/{id}"), |s, v| {
        s == 200 && v["status"] == "NEW"
    });
    let mut plain = body.clone();
    plain.as_object_mut().unwrap().remove("client_order_id");
    let (s, c) = Api::answer(
        api.request("POST", "/orders")
            .set("content-type", "application/json")
            .set("idempotency-key", "order-42")
            .send_string(&plain.to_string()),
    );
    assert_eq!(
        (s, c["id"].as_u64(), c["status"].as_str()),
        (200, Some(id), Some("NEW"))
    );
    // Without a client order id, every request is a new order with a fresh id.
    let (_, x) = api.post("/orders", &plain.to_string());
    let (_, y) = api.post("/orders", &plain.to_string());
    assert_ne!(x["id"], y["id"]);
    assert_ne!(x["id"].as_u64(), Some(id));
    api.until(&format!("/orders/{}", y["id"]), |s, _| s == 200);
    let reader = reader(&p);
    let mut published = 0;
    read_topic(&reader, &p.topic("orders"), |m| {
        let msg: OrderMessage = serde_json::from_slice(m.payload().unwrap()).unwrap();
        published += usize::from(msg.id == id);
    })
    .unwrap();
    assert_eq!(published, 1, "one order on the topic for three requests");
    let (_, status) = api.get(&format!("/orders/{id}"));
    assert_eq!(status["status"], "NEW");
}

/// A raw HTTP/1.1 request (any Host header), answered as (status, headers, body).
fn raw_http(port: u16, head: &str, body: &str) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let req = format!(
        "{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (headers, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = headers.split(' ').nth(1).unwrap().parse().unwrap();
    (status, headers.to_ascii_lowercase(), body.to_string())
}

/// Only on the embedded broker: what is attacked is market-view's HTTP side, the same on both.
#[test]
fn market_view_refuses_impersonation_forgery_cross_site_rebinding_and_floods() {
    let p = start(On::Mock, TopicLayout::default());
    let dir = std::env::temp_dir().join(format!("kappa-attacks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("market-view.log");
    let (mut api, _children) = serve_logged(
        &p,
        &[
            "--client-ip-header",
            "X-Real-IP",
            // Bursts big enough for the test's own requests; refills slow enough that a flood
            // outruns them even when a loaded machine serves each request in tens of ms (at 100
            // and 20 per second a slow run never emptied the buckets).
            "--ip-rate",
            "10",
            "--ip-burst",
            "100",
            "--trader-rate",
            "2",
            "--trader-burst",
            "20",
            "--max-streams-per-ip",
            "2",
            "--cors-origins",
            "https://trusted.example",
        ],
        true,
        Some(&log),
    );
    let port: u16 = api.base.rsplit(':').next().unwrap().parse().unwrap();
    let reader = reader(&p);
    let orders = || high_watermark(&reader, &p.topic("orders"));
    let order = r#"{"instrument":"TCS","trxn_type":"BUY","quantity":1,"price":"2.00"}"#;
    let error = |(s, v): (u16, Value)| (s, v["error"].as_str().unwrap_or("").to_string());
    let before = orders();

    // --- Credentials: missing, malformed, forged, expired.
    let anon = api.anonymous();
    assert_eq!(
        error(anon.post("/orders", order)),
        (401, "unauthenticated".into())
    );
    let r = anon
        .request("POST", "/orders")
        .set("content-type", "application/json")
        .send_string(order);
    let Err(ureq::Error::Status(401, r)) = r else {
        panic!("expected 401")
    };
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let forged = format!("kx_{}", "ab".repeat(32));
    let mut forger = anon.clone();
    forger.key = Some(forged.clone());
    assert_eq!(
        error(forger.post("/orders", order)),
        (401, "invalid_credential".into())
    );
    assert_eq!(error(forger.get("/me")), (401, "invalid_credential".into()));
    let basic = anon
        .request("GET", "/me")
        .set("authorization", "Basic QVBJMDE6cGFzc3dvcmQ=")
        .call();
    assert!(matches!(basic, Err(ureq::Error::Status(401, _))));
    let expired_key = kappa_exchange::serving::auth::new_key();
    let past = chrono::Utc::now() - chrono::Duration::hours(1);
    {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&api.key_file)
            .unwrap();
        let line = kappa_exchange::serving::auth::key_line("OLDTIMER", &expired_key, Some(past));
        writeln!(f, "{line}").unwrap();
    }
    let mut expired = anon.clone();
    expired.key = Some(expired_key.clone());
    expired.until("/me", |s, v| s == 401 && v["error"] == "expired_credential");
    assert_eq!(
        error(expired.post("/orders", order)),
        (401, "expired_credential".into())
    );

    // --- Impersonation: the trader is the key's; naming another is refused.
    let impersonating =
        r#"{"instrument":"TCS","trxn_type":"BUY","quantity":1,"price":"2.00","trader":"SOMEONE"}"#;
    assert_eq!(
        error(api.post("/orders", impersonating)),
        (403, "trader_mismatch".into())
    );
    assert_eq!(orders(), before, "nothing refused so far was published");

    // --- Cross-trader cancel and amend of a resting order.
    let (s, placed) = api.post("/orders", order);
    assert_eq!(s, 202, "{placed}");
    let id = placed["id"].as_u64().unwrap();
    assert_eq!(placed["order"]["trader"], "API01");
    api.until(&format!("/orders/{id}"), |s, v| {
        s == 200 && v["status"] == "NEW"
    });
    let someone = api.as_trader("SOMEONE");
    for (path, body) in [("cancel", ""), ("amend", r#"{"quantity":3}"#)] {
        let (s, v) = someone.post(&format!("/orders/{id}/{path}"), body);
        assert_eq!(
            (s, v["error"].as_str()),
            (403, Some("not_order_owner")),
            "{path}: {v}"
        );
    }
    assert_eq!(
        error(someone.get(&format!("/orders/{id}"))),
        (403, "forbidden".into())
    );
    assert_eq!(error(someone.get("/pnl/API01")), (403, "forbidden".into()));
    assert_eq!(orders(), before + 1);

    // --- Browser attacks: a text/plain or form POST (no CORS preflight), a foreign Origin, a
    // preflight from an unlisted origin, and DNS rebinding (a foreign Host).
    let key = api.keys["API01"].clone();
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        // A connection of its own: the server closes one whose refused body it did not read,
        // and a pooled connection reused after that would fail the next request (EOF).
        let r = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(10))
            .build()
            .post(&format!("{}/orders", api.base))
            .set("authorization", &format!("Bearer {key}"))
            .set("content-type", ct)
            .send_string(order);
        let Err(ureq::Error::Status(415, r)) = r else {
            panic!("{ct}: expected 415, got {:?}", r.map(|r| r.status()))
        };
        assert_eq!(
            r.into_json::<Value>().unwrap()["error"],
            "unsupported_media_type"
        );
    }
    let foreign = api
        .request("POST", "/orders")
        .set("content-type", "application/json")
        .set("origin", "https://evil.example")
        .send_string(order);
    let Err(ureq::Error::Status(403, r)) = foreign else {
        panic!("foreign origin: expected 403")
    };
    assert_eq!(
        r.into_json::<Value>().unwrap()["error"],
        "origin_not_allowed"
    );
    let (s, h, _) = raw_http(
        port,
        &format!("OPTIONS /orders HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: https://evil.example\r\nAccess-Control-Request-Method: POST"),
        "",
    );
    assert_eq!(s, 403);
    assert!(!h.contains("access-control-allow-origin"), "{h}");
    // The configured origin is allowed, and told so.
    let (s, h, _) = raw_http(
        port,
        &format!("OPTIONS /orders HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: https://trusted.example\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: authorization, content-type"),
        "",
    );
    assert_eq!(s, 204, "{h}");
    assert!(
        h.contains("access-control-allow-origin: https://trusted.example"),
        "{h}"
    );
    assert!(
        h.contains("access-control-allow-headers: authorization, content-type"),
        "{h}"
    );
    let (s, h, _) = raw_http(
        port,
        &format!("GET /instruments HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: https://trusted.example"),
        "",
    );
    assert_eq!(s, 200);
    assert!(
        h.contains("access-control-allow-origin: https://trusted.example"),
        "{h}"
    );
    // Same origin (the dashboard's own requests) passes.
    let (s, _, b) = raw_http(
        port,
        &format!("POST /orders HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://127.0.0.1:{port}\r\nContent-Type: application/json\r\nAuthorization: Bearer {key}"),
        order,
    );
    assert_eq!(s, 202, "{b}");
    for head in [
        format!("GET / HTTP/1.1\r\nHost: rebind.evil.example:{port}"),
        "GET /instruments HTTP/1.1\r\nHost: rebind.evil.example".to_string(),
        format!("POST /orders HTTP/1.1\r\nHost: rebind.evil.example:{port}\r\nContent-Type: application/json\r\nAuthorization: Bearer {key}"),
        "GET / HTTP/1.0".to_string(),
    ] {
        let (s, _, b) = raw_http(port, &head, order);
        assert_eq!(s, 403, "{head}: {b}");
        assert!(b.contains("host_not_allowed"), "{head}: {b}");
    }
    assert_eq!(orders(), before + 2);

    // --- Floods: one address beyond its bucket gets 429 with Retry-After, others are served;
    // one trader beyond theirs likewise.
    let from = |ip: &str| {
        anon.request("GET", "/instruments")
            .set("x-real-ip", ip)
            .call()
            .map_err(Box::new)
    };
    let mut limited = None;
    for _ in 0..300 {
        if let Err(e) = from("203.0.113.7") {
            if let ureq::Error::Status(429, r) = *e {
                limited = Some(r);
                break;
            }
        }
    }
    let r = limited.expect("a flood from one address is limited");
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    assert_eq!(r.into_json::<Value>().unwrap()["error"], "rate_limited");
    assert!(
        from("203.0.113.8").is_ok(),
        "another address is not limited"
    );
    let mut flooder = api.add_trader("FLOODER");
    flooder.agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build();
    let statuses: Vec<u16> = (0..60)
        .map(|i| {
            let r = flooder
                .request("GET", "/me")
                .set("x-real-ip", &format!("198.51.100.{i}"))
                .call();
            match r {
                Ok(r) => r.status(),
                Err(ureq::Error::Status(s, _)) => s,
                Err(e) => panic!("{e}"),
            }
        })
        .collect();
    assert!(
        statuses.contains(&429),
        "a flooding trader is limited: {statuses:?}"
    );
    assert_eq!(api.get("/me").0, 200, "another trader is not");

    // --- Live streams: at most 2 per address.
    let stream = |ip: &str| {
        anon.request("GET", "/stream/TCS")
            .set("x-real-ip", ip)
            .call()
            .map_err(Box::new)
    };
    let kept = (stream("192.0.2.1").unwrap(), stream("192.0.2.1").unwrap());
    let third = stream("192.0.2.1").map(|_| ()).unwrap_err();
    let ureq::Error::Status(429, r) = *third else {
        panic!("a third stream from one address: expected 429")
    };
    assert_eq!(r.into_json::<Value>().unwrap()["error"], "too_many_streams");
    let other = stream("192.0.2.2").expect("another address streams");
    drop((kept, other));

    // --- Counted in metrics.
    let metrics = api.ops_text("/metrics");
    for reason in [
        "host",
        "origin",
        "content_type",
        "ip_rate",
        "trader_rate",
        "unauthenticated",
        "invalid_credential",
        "expired_credential",
    ] {
        let line = metrics
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "kappa_api_refused_total{{job=\"market-view\",reason=\"{reason}\"}}"
                ))
            })
            .unwrap_or_else(|| panic!("no {reason} series in\n{metrics}"));
        let n: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(n >= 1, "{line}");
    }
    assert!(
        metrics
            .contains("kappa_api_streams_refused_total{job=\"market-view\",scope=\"address\"} 1"),
        "{metrics}"
    );

    // --- Audit: one JSON line per order-entry request, with trader, order id, outcome and
    // reason; never a key.
    let text = std::fs::read_to_string(&log).unwrap();
    let id_text = id.to_string();
    let audit: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "audit" && v["fields"]["event"] == "order_entry")
        .map(|v| v["fields"].clone())
        .collect();
    let has = |f: &dyn Fn(&Value) -> bool, what: &str| {
        assert!(
            audit.iter().any(f),
            "no audit line for {what} in {audit:#?}"
        );
    };
    has(
        &|a| {
            a["outcome"] == "published"
                && a["trader"] == "API01"
                && a["order_id"] == id_text.as_str()
        },
        "the placed order",
    );
    has(
        &|a| {
            a["outcome"] == "unauthenticated"
                && a["reason"] == "unauthenticated"
                && a["trader"] == ""
        },
        "no key",
    );
    has(&|a| a["reason"] == "invalid_credential", "a forged key");
    has(&|a| a["reason"] == "expired_credential", "an expired key");
    has(
        &|a| {
            a["outcome"] == "forbidden"
                && a["reason"] == "trader_mismatch"
                && a["trader"] == "API01"
        },
        "impersonation",
    );
    has(
        &|a| {
            a["action"] == "cancel"
                && a["reason"] == "not_order_owner"
                && a["trader"] == "SOMEONE"
                && a["order_id"] == id_text.as_str()
        },
        "a cross-trader cancel",
    );
    has(
        &|a| a["action"] == "amend" && a["reason"] == "not_order_owner",
        "a cross-trader amend",
    );
    has(&|a| a["reason"] == "unsupported_media_type", "text/plain");
    has(&|a| a["reason"] == "origin_not_allowed", "a foreign origin");
    has(&|a| a["reason"] == "host_not_allowed", "a foreign host");
    // Order entry requests in the test: every one has its line.
    let entries = audit.len();
    assert!(entries >= 14, "{entries} audit lines");
    for key in api.keys.values().chain([&forged, &expired_key]) {
        assert!(!text.contains(key.as_str()), "a key is in the log");
        assert!(!text.contains(&key[3..]), "a key is in the log");
    }
    std::fs::remove_dir_all(&dir).ok();
}
