//! A real browser against the real demo, on the embedded broker and on a real Kafka
//! (`kappa demo --brokers`): headless Chromium (driven through chromedriver's W3C WebDriver API)
//! loads the dashboard while `kappa demo` runs with live flow, and the test checks
//! that the order book with its depth chart, trade tape, chart and leaderboard render with live
//! values that keep changing, that the values agree with the HTTP API, and that the instrument
//! picker works; then, signed in with the demo trader's key, that orders placed through the ticket
//! appear in the trader's order table and follow their status (cancelled with the table's cancel
//! button), and that the trader's P&L chart draws the API's history once the trader has traded. A
//! screenshot is saved to `target/tmp/dashboard-{mock,kafka}.png`.
//!
//! Needs Debian's `chromium` and `chromium-driver` (installed by `scripts/setup.sh`); paths can be
//! overridden with `KAPPA_CHROMIUM` and `KAPPA_CHROMEDRIVER`.

mod support;

use base64::Engine as _;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{free_port, on_both_brokers, real_kafka, Killed, On};

on_both_brokers!(dashboard_renders_live_market_and_the_traders_orders_and_pnl_in_chromium);

fn tool(env: &str, default: &str) -> String {
    let path = std::env::var(env).unwrap_or_else(|_| default.to_string());
    assert!(
        std::path::Path::new(&path).exists(),
        "{path} not found: install Debian's chromium and chromium-driver (scripts/setup.sh does), or set {env}"
    );
    path
}

/// A minimal W3C WebDriver client.
struct Driver {
    base: String,
    agent: ureq::Agent,
}

impl Driver {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let req = self.agent.request(method, &format!("{}{path}", self.base));
        let resp = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        };
        match resp {
            Ok(r) => r.into_json::<Value>().unwrap()["value"].take(),
            Err(ureq::Error::Status(code, r)) => {
                panic!(
                    "webdriver {method} {path}: {code} {}",
                    r.into_string().unwrap_or_default()
                )
            }
            Err(e) => panic!("webdriver {method} {path}: {e}"),
        }
    }

    fn script(&self, session: &str, js: &str) -> Value {
        self.call(
            "POST",
            &format!("/session/{session}/execute/sync"),
            Some(json!({"script": js, "args": []})),
        )
    }
}

/// Ends a WebDriver session (and so its Chromium) when dropped, also when the test fails:
/// chromedriver's own end leaves the browser running.
struct Closing<'a>(&'a Driver, String);

impl Drop for Closing<'_> {
    fn drop(&mut self) {
        let url = format!("{}/session/{}", self.0.base, self.1);
        let _ = self.0.agent.request("DELETE", &url).call();
    }
}

/// What the page shows, read from the DOM.
const READ_PAGE: &str = r#"
const q = (s) => document.querySelector(s);
const texts = (s) => [...document.querySelectorAll(s)].map((e) => e.textContent.trim());
const tape = [...document.querySelectorAll('#tape tbody tr[data-trade-id]')];
return {
  instrument: q('#book-inst').textContent,
  bids: texts('#book-bids tbody tr.bid td:first-child'),
  asks: texts('#book-asks tbody tr.ask td:first-child'),
  spread: q('#spread-value') ? q('#spread-value').textContent : null,
  tape: tape.map((r) => r.getAttribute('data-trade-id')),
  tape_prices: tape.map((r) => r.children[1].textContent),
  chart_bars: Number(q('#chart').dataset.bars || 0),
  board: texts('#board tbody tr[data-trader]').length,
  status: q('#status').textContent,
  updates: Number(document.body.dataset.updates || 0),
  // The ladder's levels (best first) and the depth chart's markers: [price, quantity or cumulative].
  ladder_bids: [...document.querySelectorAll('#book-bids tbody tr.bid')].map((r) => [Number(r.dataset.price), Number(r.dataset.quantity)]),
  ladder_asks: [...document.querySelectorAll('#book-asks tbody tr.ask')].map((r) => [Number(r.dataset.price), Number(r.dataset.quantity)]).reverse(),
  depth_bids: [...document.querySelectorAll('#depth circle.depth-pt.bid')].map((c) => [Number(c.dataset.price), Number(c.dataset.cum)]),
  depth_asks: [...document.querySelectorAll('#depth circle.depth-pt.ask')].map((c) => [Number(c.dataset.price), Number(c.dataset.cum)]),
  depth_areas: document.querySelectorAll('#depth path.bid, #depth path.ask').length,
};
"#;

/// The signed-in trader's part of the page: the orders table and the P&L chart.
const READ_MINE: &str = r#"
const rows = [...document.querySelectorAll('#orders tbody tr[data-order-id]')];
const chart = document.querySelector('#pnl-chart');
return {
  orders: rows.map((r) => ({
    id: r.dataset.orderId,
    instrument: r.children[1].textContent,
    side: r.children[2].textContent,
    status: r.querySelector('td.status').textContent,
    cancel: !!r.querySelector('button.cancel'),
  })),
  orders_text: document.querySelector('#orders tbody').textContent,
  pnl_points: Number(chart.dataset.points || 0),
  pnl_last: chart.dataset.last === undefined ? null : Number(chart.dataset.last),
  pnl_line: chart.querySelectorAll('polyline').length,
  pnl_text: chart.textContent,
  pnl_total: document.querySelector('#pnl-total').textContent,
};
"#;

/// `(price, cumulative quantity)` pairs, from a JSON array of `[price, value]` pairs.
fn pairs(v: &Value) -> Vec<(f64, f64)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_f64().unwrap(), p[1].as_f64().unwrap()))
        .collect()
}

/// The running sums of a side's quantities: what its depth chart must show.
fn cumulative(levels: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut sum = 0.0;
    levels
        .iter()
        .map(|(p, q)| {
            sum += q;
            (*p, sum)
        })
        .collect()
}

fn same(a: &[(f64, f64)], b: &[(f64, f64)]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x.0 - y.0).abs() < 1e-9 && (x.1 - y.1).abs() < 1e-6)
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> Option<Value>) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn is_price(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        !int.is_empty()
            && int.bytes().all(|b| b.is_ascii_digit())
            && frac.len() == 2
            && frac.bytes().all(|b| b.is_ascii_digit())
    })
}

fn dashboard_renders_live_market_and_the_traders_orders_and_pnl_in_chromium(on: On) {
    let chromium = tool("KAPPA_CHROMIUM", "/usr/bin/chromium");
    let chromedriver = tool("KAPPA_CHROMEDRIVER", "/usr/bin/chromedriver");
    let (web, wd) = (free_port(), free_port());
    let mut demo = Command::new(env!("CARGO_BIN_EXE_kappa"))
        .args([
            "demo",
            "--count",
            "10000",
            "--live-rate",
            "100",
            "--push-interval-ms",
            "100",
        ])
        .args(["--bind", &format!("127.0.0.1:{web}")])
        .args(match on {
            On::Mock => vec![],
            On::Kafka => vec!["--brokers", real_kafka()],
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = demo.stdout.take().unwrap();
    let mut children = Killed(vec![demo]);
    // Wait for the batch to be verified and the live phase to start.
    let mut lines = BufReader::new(out).lines();
    let mut seen = Vec::new();
    loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("demo ended early:\n{}", seen.join("\n")))
            .unwrap();
        if line.starts_with("live:") {
            break;
        }
        seen.push(line);
    }
    assert!(
        seen.iter()
            .any(|l| l.contains(&format!("dashboard and API at http://127.0.0.1:{web}/"))),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|l| l.starts_with("consistency check: OK")),
        "{seen:?}"
    );
    std::thread::spawn(move || lines.for_each(drop));
    let demo_key = seen
        .iter()
        .find_map(|l| l.strip_prefix("demo trader DEMO, API key (this run only): "))
        .unwrap_or_else(|| panic!("the demo prints its trader's key: {seen:?}"))
        .to_string();

    children.0.push(
        Command::new(&chromedriver)
            .arg(format!("--port={wd}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let driver = Driver {
        base: format!("http://127.0.0.1:{wd}"),
        agent: ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(60))
            .build(),
    };
    wait_for("chromedriver", Duration::from_secs(20), || {
        let r = driver
            .agent
            .get(&format!("{}/status", driver.base))
            .call()
            .ok()?;
        let v: Value = r.into_json().ok()?;
        v["value"]["ready"].as_bool().filter(|r| *r).map(|_| v)
    });
    let session = driver.call(
        "POST",
        "/session",
        Some(json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-dev-shm-usage", "--window-size=1400,950"]
        }}}})),
    )["sessionId"]
        .as_str()
        .unwrap()
        .to_string();
    let _closing = Closing(&driver, session.clone());
    let url = format!("http://127.0.0.1:{web}/#TCS");
    driver.call(
        "POST",
        &format!("/session/{session}/url"),
        Some(json!({"url": url})),
    );

    // The book, tape, chart and leaderboard render with real values.
    let first = wait_for("the dashboard to render", Duration::from_secs(30), || {
        let v = driver.script(&session, READ_PAGE);
        let ok = v["instrument"] == "TCS"
            && v["status"] == "live"
            && v["bids"].as_array()?.len() == 5
            && v["asks"].as_array()?.len() == 5
            && !v["tape"].as_array()?.is_empty()
            && v["chart_bars"].as_u64()? > 0
            && v["board"].as_u64()? > 0;
        ok.then_some(v)
    });
    assert!(
        first["bids"].as_array().unwrap().iter().all(is_price),
        "{first}"
    );
    assert!(
        first["asks"].as_array().unwrap().iter().all(is_price),
        "{first}"
    );
    assert!(is_price(&first["spread"]), "{first}");
    assert!(
        first["tape_prices"]
            .as_array()
            .unwrap()
            .iter()
            .all(is_price),
        "{first}"
    );
    let bid: f64 = first["bids"][0].as_str().unwrap().parse().unwrap();
    let ask: f64 = first["asks"][4].as_str().unwrap().parse().unwrap();
    assert!(
        bid < ask,
        "best bid {bid} must be below best ask {ask}: {first}"
    );

    // The depth chart: each side's levels as in the ladder, accumulated, drawn as two areas.
    let depth_of = |v: &Value| (pairs(&v["depth_bids"]), pairs(&v["depth_asks"]));
    let (depth_bids, depth_asks) = depth_of(&first);
    assert_eq!(first["depth_areas"], 2, "{first}");
    assert!(
        same(&depth_bids, &cumulative(&pairs(&first["ladder_bids"])))
            && same(&depth_asks, &cumulative(&pairs(&first["ladder_asks"]))),
        "the depth chart is not the ladder's cumulative depth: {first}"
    );
    assert_eq!((depth_bids.len(), depth_asks.len()), (5, 5), "{first}");
    assert!(depth_bids[0].0 < depth_asks[0].0, "{first}");
    // ... and the API's book: the same levels, once page and API are read between two changes.
    let book_depth = wait_for(
        "the depth chart to show the API's book",
        Duration::from_secs(60),
        || {
            let page = driver.script(&session, READ_PAGE);
            let api: Value = ureq::get(&format!("http://127.0.0.1:{web}/book/TCS"))
                .call()
                .ok()?
                .into_json()
                .ok()?;
            let side = |levels: &Value| -> Vec<(f64, f64)> {
                let levels: Vec<(f64, f64)> = levels
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|l| {
                        (
                            l["price"].as_f64().unwrap(),
                            l["quantity"].as_f64().unwrap(),
                        )
                    })
                    .collect();
                cumulative(&levels)
            };
            let (bids, asks) = depth_of(&page);
            (same(&bids, &side(&api["bids"])) && same(&asks, &side(&api["asks"]))).then_some(page)
        },
    );
    // Live: it follows the book without a reload.
    wait_for("the depth chart to change", Duration::from_secs(60), || {
        let page = driver.script(&session, READ_PAGE);
        (depth_of(&page) != depth_of(&book_depth)).then_some(page)
    });

    // The displayed trades are real: every one is on the API's tape.
    let api: Value = ureq::get(&format!("http://127.0.0.1:{web}/trades/TCS?limit=200"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    let api_ids: Vec<String> = api
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["trade_id"].to_string())
        .collect();
    let shown = first["tape"].as_array().unwrap();
    assert!(
        shown
            .iter()
            .all(|id| api_ids.contains(&id.as_str().unwrap().to_string())),
        "{shown:?} vs {api_ids:?}"
    );

    // Live: new trades arrive on the tape without a reload.
    let newest = first["tape"][0].clone();
    let later = wait_for("a new trade on the tape", Duration::from_secs(60), || {
        let v = driver.script(&session, READ_PAGE);
        (v["tape"][0] != newest).then_some(v)
    });
    assert!(
        later["updates"].as_u64() > first["updates"].as_u64(),
        "{later}"
    );

    let shot = driver.call("GET", &format!("/session/{session}/screenshot"), None);
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot.as_str().unwrap())
        .unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let name = format!("dashboard-{}.png", format!("{on:?}").to_lowercase());
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, &png).unwrap();
    eprintln!("screenshot: {}", path.display());

    // The instrument picker switches the whole page.
    driver.script(
        &session,
        "document.querySelector('#picker [data-symbol=INFY]').click(); return null;",
    );
    let infy = wait_for("the INFY book", Duration::from_secs(30), || {
        let v = driver.script(&session, READ_PAGE);
        (v["instrument"] == "INFY"
            && !v["bids"].as_array()?.is_empty()
            && !v["tape"].as_array()?.is_empty())
        .then_some(v)
    });
    let infy_bid: f64 = infy["bids"][0].as_str().unwrap().parse().unwrap();
    assert!(
        infy_bid > 100.0,
        "INFY trades near 1500, not at TCS's price: {infy}"
    );

    // Signed out, the trader's orders and P&L are not shown, only asked for.
    let signed_out = driver.script(&session, READ_MINE);
    assert!(
        signed_out["orders"].as_array().unwrap().is_empty()
            && signed_out["orders_text"]
                .as_str()
                .unwrap()
                .contains("sign in")
            && signed_out["pnl_points"] == 0
            && signed_out["pnl_text"].as_str().unwrap().contains("sign in"),
        "{signed_out}"
    );

    // The order ticket: refused plainly without a key and with a wrong one; with the demo's
    // key the order is accepted for trader DEMO and its status follows.
    let ticket = |key: &str, order_type: &str, price: &str, side: &str| {
        driver.script(
            &session,
            &format!(
                "const k = document.querySelector('#api-key'); k.value = {key:?}; \
                 k.dispatchEvent(new Event('change')); \
                 document.querySelector('#ticket [name=order_type]').value = {order_type:?}; \
                 document.querySelector('#ticket [name=price]').value = {price:?}; \
                 document.querySelector('#{side}').click(); return null;"
            ),
        );
    };
    let result = |what: &str, f: &dyn Fn(&str, &str, &str) -> bool| {
        wait_for(what, Duration::from_secs(30), || {
            let v = driver.script(
                &session,
                "const r = document.querySelector('#ticket-result'); \
                 return {result: r.textContent, order: r.dataset.order || '', \
                 who: document.querySelector('#who').textContent};",
            );
            f(
                v["result"].as_str()?,
                v["who"].as_str()?,
                v["order"].as_str()?,
            )
            .then_some(v)
        })
    };
    // Far below the market: it rests until cancelled.
    let resting_price = format!("{:.2}", (infy_bid * 0.9).floor());
    ticket("", "LIMIT", &resting_price, "buy");
    result("a refusal without a key", &|r, _, _| {
        r.contains("refused") && r.contains("API key")
    });
    ticket("kx_forged", "LIMIT", &resting_price, "buy");
    let forged = result("a refusal of a forged key", &|r, who, _| {
        r.contains("401") && r.contains("invalid_credential") && who.contains("key refused")
    });
    eprintln!("forged key: {forged}");
    ticket(&demo_key, "LIMIT", &resting_price, "buy");
    let placed = result("the demo trader's order", &|r, who, order| {
        who == "trading as DEMO" && r.starts_with("order ") && !order.is_empty()
    });
    let id: u64 = placed["order"].as_str().unwrap().parse().unwrap();
    let status = wait_for("the order's status", Duration::from_secs(30), || {
        ureq::get(&format!("http://127.0.0.1:{web}/orders/{id}"))
            .set("Authorization", &format!("Bearer {demo_key}"))
            .call()
            .ok()?
            .into_json::<Value>()
            .ok()
    });
    assert_eq!(
        (status["trader"].as_str(), status["instrument"].as_str()),
        (Some("DEMO"), Some("INFY")),
        "{status}"
    );
    // Only the demo trader sees it.
    assert!(matches!(
        ureq::get(&format!("http://127.0.0.1:{web}/orders/{id}")).call(),
        Err(ureq::Error::Status(401, _))
    ));

    // The trader's orders table shows it, live, with a cancel button...
    let row = |mine: &Value, id: u64| -> Option<Value> {
        mine["orders"]
            .as_array()?
            .iter()
            .find(|o| o["id"].as_str().and_then(|s| s.parse().ok()) == Some(id))
            .cloned()
    };
    let open = wait_for(
        "the order in the orders table",
        Duration::from_secs(30),
        || {
            let mine = driver.script(&session, READ_MINE);
            let r = row(&mine, id)?;
            (r["status"] == "NEW" && r["cancel"] == true).then_some(mine)
        },
    );
    let shown = row(&open, id).unwrap();
    assert_eq!(
        (shown["instrument"].as_str(), shown["side"].as_str()),
        (Some("INFY"), Some("BUY")),
        "{open}"
    );
    // ...which cancels it: the row follows to CANCELLED, as the API says.
    driver.script(
        &session,
        &format!("document.querySelector('#orders button.cancel[data-order-id=\"{id}\"]').click(); return null;"),
    );
    let cancelled = wait_for(
        "the order to show CANCELLED",
        Duration::from_secs(30),
        || {
            let mine = driver.script(&session, READ_MINE);
            let r = row(&mine, id)?;
            (r["status"] == "CANCELLED" && r["cancel"] == false).then_some(mine)
        },
    );
    let api_status: Value = ureq::get(&format!("http://127.0.0.1:{web}/orders/{id}"))
        .set("Authorization", &format!("Bearer {demo_key}"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(
        (api_status["status"].as_str(), api_status["reason"].as_str()),
        (Some("CANCELLED"), Some("requested")),
        "{cancelled}"
    );

    // Trades make P&L: a market buy, then a market sell in a later window. Both show in the
    // table, newest first.
    let mut ids = vec![id];
    for side in ["buy", "sell"] {
        std::thread::sleep(Duration::from_millis(1500));
        let before = ids.last().unwrap().to_string();
        ticket(&demo_key, "MARKET", "", side);
        let placed = result("a market order", &|r, _, order| {
            order != before && r.starts_with("order ")
        });
        ids.push(placed["order"].as_str().unwrap().parse().unwrap());
    }
    let filled = wait_for(
        "the market orders filled in the table",
        Duration::from_secs(30),
        || {
            let mine = driver.script(&session, READ_MINE);
            let shown: Vec<String> = mine["orders"]
                .as_array()?
                .iter()
                .map(|o| {
                    format!(
                        "{} {}",
                        o["id"].as_str().unwrap(),
                        o["status"].as_str().unwrap()
                    )
                })
                .collect();
            let expected = [
                format!("{} FILLED", ids[2]),
                format!("{} FILLED", ids[1]),
                format!("{} CANCELLED", ids[0]),
            ];
            (shown.len() >= 3 && shown[..3] == expected).then_some(mine)
        },
    );
    eprintln!("orders table: {}", filled["orders"]);

    // The P&L chart draws the trader's history, as the API has it.
    let pnl = wait_for("the P&L chart", Duration::from_secs(90), || {
        let mine = driver.script(&session, READ_MINE);
        let history: Value = ureq::get(&format!("http://127.0.0.1:{web}/pnl/DEMO/history"))
            .set("Authorization", &format!("Bearer {demo_key}"))
            .call()
            .ok()?
            .into_json()
            .ok()?;
        let points = history["points"].as_array()?;
        let last = points.last()?["total"].as_f64()?;
        (points.len() >= 2
            && mine["pnl_points"].as_u64()? == points.len() as u64
            && (mine["pnl_last"].as_f64()? - last).abs() < 1e-9
            && mine["pnl_line"] == 1
            && mine["pnl_total"].as_str()?.starts_with("DEMO "))
        .then_some(mine)
    });
    eprintln!("P&L chart: {pnl}");
}
