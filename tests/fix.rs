//! The FIX gateway as a process, driven by QuickFIX (PyPI `quickfix`, built by scripts/setup.sh
//! into .venv-fix) through `tests/fix/quickfix_client.py`, with the match
//! maker trading on both brokers: orders of every type, fills between two sessions, cancel,
//! replace, refusals, gaps in both directions; a kill -9 of the gateway while fills happen; and
//! a burst of orders through a kill -9. Every check on the FIX side is cross-checked against the
//! topics.

mod support;

use kappa_exchange::runtime::kafka::read_topic;
use kappa_exchange::wire::{OrderEventMessage, OrderMessage, TradeMessage};
use rdkafka::message::Message;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

on_both_brokers!(
    quickfix_trades_cancels_replaces_and_resends,
    quickfix_receives_reports_made_while_the_gateway_was_killed,
    quickfix_burst_through_a_gateway_kill_9,
);

fn python() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv-fix/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: run `bash scripts/setup.sh` (it installs QuickFIX)",
        venv.display()
    );
    venv
}

struct Fix {
    dir: PathBuf,
    port: u16,
    key_file: PathBuf,
    keys: serde_json::Value,
}

fn setup(name: &str, traders: &[&str]) -> Fix {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("kx-fix-{name}-{}-{port}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("keys");
    let mut keys = serde_json::Map::new();
    for t in traders {
        let (key, _) = kappa_exchange::serving::auth::add_key(Some(&key_file), t, None).unwrap();
        keys.insert(t.to_string(), key.into());
    }
    Fix {
        dir,
        port,
        key_file,
        keys: keys.into(),
    }
}

/// Starts the gateway on the pipeline; returns once it accepts connections.
fn gateway(p: &Pipeline, f: &Fix) -> Child {
    let bind = format!("127.0.0.1:{}", f.port);
    let state = f.dir.join("gateway-state");
    let child = job(
        p,
        env!("CARGO_BIN_EXE_fix-gateway"),
        &[
            "--bind",
            &bind,
            "--state-dir",
            state.to_str().unwrap(),
            "--api-keys",
            f.key_file.to_str().unwrap(),
            "--order-id-key",
            "fix-test",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(&bind).is_err() {
        assert!(
            Instant::now() < deadline,
            "fix-gateway did not listen on {bind}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}

fn client(f: &Fix, phase: &str, client_dir: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(python());
    c.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fix/quickfix_client.py"
    ))
    .args(["--port", &f.port.to_string(), "--phase", phase])
    .arg("--dir")
    .arg(client_dir)
    .args(["--keys", &f.keys.to_string()])
    .args(extra)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    c
}

fn summary(out: std::process::Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "QuickFIX client failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim().lines().last().unwrap_or("")).expect("one JSON summary line")
}

fn run(f: &Fix, phase: &str, client_dir: &Path) -> serde_json::Value {
    summary(client(f, phase, client_dir, &[]).output().unwrap())
}

fn orders(p: &Pipeline) -> Vec<OrderMessage> {
    let mut v = Vec::new();
    read_topic(&reader(p), &p.topic("orders"), |m| {
        v.push(serde_json::from_slice(m.payload().unwrap()).unwrap())
    })
    .unwrap();
    v
}

fn trades(p: &Pipeline) -> Vec<TradeMessage> {
    let mut v = Vec::new();
    read_topic(&reader(p), &p.topic("trades"), |m| {
        v.push(serde_json::from_slice(m.payload().unwrap()).unwrap())
    })
    .unwrap();
    v
}

fn events(p: &Pipeline) -> Vec<OrderEventMessage> {
    let mut v = Vec::new();
    read_topic(&reader(p), &p.topic("order-events"), |m| {
        v.push(serde_json::from_slice(m.payload().unwrap()).unwrap())
    })
    .unwrap();
    v
}

fn quickfix_trades_cancels_replaces_and_resends(on: On) {
    let p = start(on, Default::default());
    let f = setup("trade", &["ALICE", "BOB"]);
    let _jobs = Killed(vec![match_maker(&p, &[]), gateway(&p, &f)]);
    let s = run(&f, "trade", &f.dir.join("client"));
    assert_eq!(s["checks"].as_array().unwrap().len(), 11, "{s}");
    assert!(s["gateway_resend_requests"].as_u64().unwrap() >= 1, "{s}");
    assert!(s["possdup"].as_u64().unwrap() >= 1, "{s}");
    // What reached `orders`: the commands the gateway accepted, nothing it refused itself.
    let published = orders(&p);
    let by = |t: &str| {
        published
            .iter()
            .filter(|o| o.trader.as_deref() == Some(t))
            .count()
    };
    // ALICE: A1, A2, A3 (refused by the engine), the replace and the cancel; BOB: B1-B6.
    assert_eq!((by("ALICE"), by("BOB")), (5, 6), "{published:#?}");
    let actions: Vec<_> = published
        .iter()
        .map(|o| o.action.clone().unwrap_or_else(|| "NEW".into()))
        .collect();
    assert_eq!(actions.iter().filter(|a| *a == "AMEND").count(), 1);
    assert_eq!(actions.iter().filter(|a| *a == "CANCEL").count(), 1);
    // The fills the reports described are the trades on the topic.
    let fills: Vec<_> = trades(&p)
        .into_iter()
        .map(|t| {
            (
                t.buyer.clone(),
                t.seller.clone(),
                t.quantity.normalize().to_string(),
                t.price.normalize().to_string(),
            )
        })
        .collect();
    let bob_buys = |q: &str| {
        (
            "BOB".to_string(),
            "ALICE".to_string(),
            q.to_string(),
            "15.5".to_string(),
        )
    };
    assert_eq!(fills, [bob_buys("4"), bob_buys("2"), bob_buys("4")]);
}

fn quickfix_receives_reports_made_while_the_gateway_was_killed(on: On) {
    let p = start(on, Default::default());
    let f = setup("kill", &["ALICE"]);
    let mut jobs = Killed(vec![match_maker(&p, &[]), gateway(&p, &f)]);
    let client_dir = f.dir.join("client");
    run(&f, "rest", &client_dir);
    // kill -9 the gateway (SIGKILL: no logout, no flush).
    let g = &mut jobs.0[1];
    g.kill().unwrap();
    g.wait().unwrap();
    // BOB trades against ALICE's order while the gateway is down.
    let bob = |id: u64, q: u32| {
        let o = serde_json::json!({"id": id, "instrument": "TCS", "trxn_type": "BUY", "quantity": q, "price": 20, "trader": "BOB"});
        ("TCS".to_string(), serde_json::to_vec(&o).unwrap(), 0i64)
    };
    publish(&p, &[bob(7_000_001, 6), bob(7_000_002, 4)]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !events(&p)
        .iter()
        .any(|e| e.trader == "ALICE" && e.status == "FILLED")
    {
        assert!(Instant::now() < deadline, "ALICE's order was not filled");
        std::thread::sleep(Duration::from_millis(200));
    }
    jobs.0[1] = gateway(&p, &f);
    let s = run(&f, "recover", &client_dir);
    assert!(s["possdup"].as_u64().unwrap() >= 2, "{s}");
}

fn quickfix_burst_through_a_gateway_kill_9(on: On) {
    let p = start(on, Default::default());
    let f = setup("burst", &["ALICE", "BOB"]);
    let mut jobs = Killed(vec![match_maker(&p, &[]), gateway(&p, &f)]);
    let count = 300;
    let burst = client(
        &f,
        "burst",
        &f.dir.join("client"),
        &["--count", &count.to_string()],
    )
    .spawn()
    .unwrap();
    // Kill the gateway in the middle of the burst, and start it again.
    let deadline = Instant::now() + Duration::from_secs(60);
    while events(&p).iter().filter(|e| e.trader == "ALICE").count() <= 40 {
        assert!(Instant::now() < deadline, "the burst did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let g = &mut jobs.0[1];
    g.kill().unwrap();
    g.wait().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    jobs.0[1] = gateway(&p, &f);
    let s = summary(burst.wait_with_output().unwrap());
    eprintln!("burst: {s}");
    // The kill happened mid-burst: what QuickFIX sent while the gateway was down reached it by
    // the gateway's resend request.
    assert!(s["gateway_resend_requests"].as_u64().unwrap() >= 1, "{s}");
    // Every burst order traded at most once: ALICE bought exactly what her reports say she did.
    let filled = s["burst_filled"].as_u64().unwrap();
    let bought: u64 = trades(&p)
        .iter()
        .filter(|t| t.buyer == "ALICE")
        .map(|t| t.quantity.to_string().parse::<u64>().unwrap())
        .sum();
    assert_eq!(bought, filled, "{s}");
    assert!(filled > 0 && filled <= count, "{s}");
    // And each burst order is on `orders` exactly once: a record whose acknowledgement the kill
    // lost was looked for on the topic after the restart, not sent again blind.
    let mut copies = std::collections::BTreeMap::<u64, usize>::new();
    for o in orders(&p)
        .iter()
        .filter(|o| o.trader.as_deref() == Some("ALICE"))
    {
        *copies.entry(o.id).or_default() += 1;
    }
    assert_eq!(copies.len() as u64, count, "every order published");
    assert!(
        copies.values().all(|&n| n == 1),
        "an order published twice: {copies:?}"
    );
}
