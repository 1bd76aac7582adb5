//! Least privilege, enforced by a real broker: Apache Kafka with SASL/SCRAM and the standard
//! authorizer (`scripts/kafka.sh start --sasl`, nothing allowed without an ACL), the users and
//! ACLs of `k8s/users.yaml` (from `kappa_exchange::access`, applied as Strimzi's User Operator
//! would), and every job of the deployment run under its own identity: each does its whole work
//! (so its ACLs are enough), and what it must not do is refused by the broker (so they are not
//! more than it needs).

mod support;

use kappa_exchange::access::{identities, Kind};
use kappa_exchange::config::load_instruments;
use kappa_exchange::runtime::broker::ensure_topics;
use kappa_exchange::runtime::kafka::{create_reader, read_topic, KafkaArgs};
use kappa_exchange::topics::TopicLayout;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{json, Value};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{clients_python, free_port, Killed};

const ADMIN: (&str, &str) = ("admin", "admin-secret");

fn password(user: &str) -> String {
    format!("pw-{user}")
}

/// A SASL/SCRAM broker with the authorizer on, for this test only.
struct SecureKafka {
    bootstrap: String,
    dir: PathBuf,
}

impl Drop for SecureKafka {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/kafka.sh"))
            .args(["stop", "--dir"])
            .arg(&self.dir)
            .stderr(Stdio::null())
            .status();
    }
}

fn secure_kafka() -> SecureKafka {
    let dir = std::env::temp_dir().join(format!("kx-acl-kafka-{}", std::process::id()));
    let out = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/kafka.sh"))
        .args(["start", "--sasl", "--ephemeral", "--heap", "512m"])
        .args(["--port", &free_port().to_string(), "--dir"])
        .arg(&dir)
        .args(["--watch-pid", &std::process::id().to_string()])
        .stderr(Stdio::inherit())
        .output()
        .expect("running scripts/kafka.sh");
    assert!(out.status.success(), "the SASL broker did not start");
    SecureKafka {
        bootstrap: String::from_utf8(out.stdout).unwrap().trim().to_string(),
        dir,
    }
}

/// Client settings of `user` on `broker`.
fn as_user(broker: &SecureKafka, user: &str, pass: &str) -> KafkaArgs {
    let mut k = KafkaArgs::new(broker.bootstrap.clone());
    k.config = vec![
        ("security.protocol".into(), "SASL_PLAINTEXT".into()),
        ("sasl.mechanism".into(), "SCRAM-SHA-512".into()),
    ];
    k.sasl_username = Some(user.to_string());
    k.sasl_password = Some(pass.to_string());
    k
}

/// A job binary run as `user`, with `env` added.
fn job(broker: &SecureKafka, bin: &str, user: &str, env: &[(&str, &str)], args: &[&str]) -> Child {
    let mut c = Command::new(bin);
    c.args(["--brokers", &broker.bootstrap])
        .args([
            "-X",
            "security.protocol=SASL_PLAINTEXT",
            "-X",
            "sasl.mechanism=SCRAM-SHA-512",
        ])
        .args(args)
        .env("KAFKA_SASL_USERNAME", user)
        .env("KAFKA_SASL_PASSWORD", password(user))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.spawn().unwrap_or_else(|e| panic!("start {bin}: {e}"))
}

/// Waits for a batch job to finish successfully.
fn finish(mut child: Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(
                status.success(),
                "{what} failed ({status}): its ACLs are not enough"
            );
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not finish in 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn records(admin: &KafkaArgs, topic: &str) -> usize {
    let reader = create_reader(&admin.reader()).unwrap();
    let mut n = 0;
    read_topic(&reader, topic, |_| n += 1).unwrap();
    n
}

/// Producing to `topic` as `user`: Ok, or the broker's error.
fn produce(broker: &SecureKafka, user: &str, topic: &str) -> Result<(), String> {
    let producer: FutureProducer = as_user(broker, user, &password(user))
        .producer()
        .set("message.timeout.ms", "10000")
        .create()
        .unwrap();
    let record = FutureRecord::to(topic).key("TCS").payload("{}");
    support::block_on(producer.send(record, Duration::from_secs(10)))
        .map(|_| ())
        .map_err(|(e, _)| e.to_string())
}

/// Logs on to the fix-gateway at `port` as `trader` with `key` and sends one NewOrderSingle.
fn fix_order(port: u16, trader: &str, key: &str) {
    use kappa_exchange::fix::codec::{decode, utc_timestamp, Decoded, Message};
    use std::io::{Read as _, Write as _};
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut stream = loop {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100))
            }
            Err(e) => panic!("fix-gateway did not listen: {e}"),
        }
    };
    let send = |stream: &mut std::net::TcpStream, t: &str, seq: u64, fields: &[(u32, &str)]| {
        let mut body = Message::new(t);
        for (tag, v) in fields {
            body.push(*tag, *v);
        }
        let now = utc_timestamp(chrono::Utc::now().timestamp_millis());
        let mut bytes = Vec::new();
        Message::with_header(&body, trader, "KAPPA", seq, &now).encode(&mut bytes);
        stream.write_all(&bytes).unwrap();
    };
    send(&mut stream, "A", 1, &[(98, "0"), (108, "30"), (554, key)]);
    // The Logon answered (not a Logout).
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let reply = loop {
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "the gateway closed the connection");
        buf.extend_from_slice(&chunk[..n]);
        if let Decoded::Message { message, .. } = decode(&buf, 1 << 16) {
            break message;
        }
    };
    assert_eq!(reply.msg_type(), "A", "{}", reply.to_text());
    let order = [
        (11, "ACL-1"),
        (55, "TCS"),
        (54, "1"),
        (38, "1"),
        (40, "2"),
        (44, "2"),
    ];
    send(&mut stream, "D", 2, &order);
}

#[test]
fn every_job_does_its_work_with_its_own_acls_and_is_refused_the_rest() {
    let instruments = load_instruments(None).unwrap();
    let broker = secure_kafka();
    let admin = as_user(&broker, ADMIN.0, ADMIN.1);
    let layout = TopicLayout::default();
    let plan: Vec<_> = layout
        .plan("")
        .into_iter()
        .chain(layout.side_outputs(""))
        .collect();
    ensure_topics(&admin, &plan).unwrap();

    // The users and ACLs of k8s/users.yaml.
    let users: Vec<Value> = identities(&instruments)
        .iter()
        .map(|a| {
            let acls: Vec<Value> = a
                .acls
                .iter()
                .map(|(r, ops)| {
                    let kind = match r.kind {
                        Kind::Topic => "topic",
                        Kind::Group => "group",
                        Kind::TransactionalId => "transactionalId",
                    };
                    let ops: Vec<String> = ops.iter().map(|o| format!("{o:?}")).collect();
                    json!({"type": kind, "name": r.name, "prefix": r.prefix, "operations": ops})
                })
                .collect();
            json!({"name": a.user, "password": password(&a.user), "acls": acls})
        })
        .collect();
    let spec = json!({"bootstrap": broker.bootstrap, "admin": [ADMIN.0, ADMIN.1], "users": users});
    let python = clients_python();
    let mut apply = Command::new(&python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/acl/apply_acls.py"
        ))
        .stdin(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e} (scripts/setup.sh creates it)", python.display()));
    apply
        .stdin
        .take()
        .unwrap()
        .write_all(spec.to_string().as_bytes())
        .unwrap();
    assert!(apply.wait().unwrap().success(), "applying the ACLs failed");

    // The pipeline, each job as its own user.
    let generator = env!("CARGO_BIN_EXE_order-generator");
    let flow = ["--count", "3000", "--rate", "0", "--seed", "7"];
    finish(
        job(&broker, generator, "kappa-order-generator", &[], &flow),
        "order-generator",
    );
    assert_eq!(records(&admin, "orders"), 3000);
    let mm = job(
        &broker,
        env!("CARGO_BIN_EXE_match-maker"),
        "kappa-match-maker",
        &[],
        &["--idle-exit-ms", "3000"],
    );
    finish(mm, "match-maker");
    let trades = records(&admin, "trades");
    assert!(trades > 0 && records(&admin, "book") > 0);
    for (bin, user) in [
        (env!("CARGO_BIN_EXE_sma-calculator"), "kappa-sma-calculator"),
        (
            env!("CARGO_BIN_EXE_profit-calculator"),
            "kappa-profit-calculator",
        ),
    ] {
        finish(job(&broker, bin, user, &[], &["--until-end"]), user);
    }
    let analytics = records(&admin, "analytics");
    assert!(analytics > 0);

    // market-view: serves the topics and publishes an order.
    let dir = std::env::temp_dir().join(format!("kx-acl-mv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let keys = dir.join("keys");
    let (key, _) = kappa_exchange::serving::auth::add_key(Some(&keys), "ACL01", None).unwrap();
    let (port, ops) = (free_port(), free_port());
    let mv = job(
        &broker,
        env!("CARGO_BIN_EXE_market-view"),
        "kappa-market-view",
        &[],
        &[
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--ops-bind",
            &format!("127.0.0.1:{ops}"),
            "--api-keys",
            keys.to_str().unwrap(),
        ],
    );
    let _mv = Killed(vec![mv]);
    let stats = support::ready_stats(ops);
    assert_eq!(
        stats["feed"]["trades"].as_u64(),
        Some(trades as u64),
        "{stats}"
    );
    let placed = ureq::post(&format!("http://127.0.0.1:{port}/orders"))
        .set("authorization", &format!("Bearer {key}"))
        .set("content-type", "application/json")
        .send_string(r#"{"instrument":"TCS","trxn_type":"BUY","quantity":1,"price":"2.00"}"#);
    assert_eq!(placed.map(|r| r.status()).ok(), Some(202));
    assert_eq!(records(&admin, "orders"), 3001);

    // fix-gateway: positions itself on order-events and orders (watermarks: Describe), takes a
    // trader's FIX logon with the same key and publishes its order.
    let fix_port = free_port();
    let state = dir.join("fix-state");
    let fg = job(
        &broker,
        env!("CARGO_BIN_EXE_fix-gateway"),
        "kappa-fix-gateway",
        &[],
        &[
            "--bind",
            &format!("127.0.0.1:{fix_port}"),
            "--state-dir",
            state.to_str().unwrap(),
            "--api-keys",
            keys.to_str().unwrap(),
        ],
    );
    let _fg = Killed(vec![fg]);
    fix_order(fix_port, "ACL01", &key);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while records(&admin, "orders") < 3002 {
        assert!(
            std::time::Instant::now() < deadline,
            "the FIX order did not reach orders"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(records(&admin, "orders"), 3002);

    // The DAGs: the analytics replay and the load test, each in its own namespace.
    for (bin, group) in [
        (env!("CARGO_BIN_EXE_sma-calculator"), "replay-bars-run1"),
        (env!("CARGO_BIN_EXE_profit-calculator"), "replay-pnl-run1"),
    ] {
        let args = [
            "--from-beginning",
            "--until-end",
            "--output-prefix",
            "replay.",
            "--group",
            group,
        ];
        finish(job(&broker, bin, "kappa-replay", &[], &args), group);
    }
    assert_eq!(records(&admin, "replay.analytics"), analytics);
    let load = [("KAFKA_TOPIC_PREFIX", "loadtest.")];
    finish(
        job(&broker, generator, "kappa-load-test", &load, &flow),
        "load-test generator",
    );
    let mm = job(
        &broker,
        env!("CARGO_BIN_EXE_match-maker"),
        "kappa-load-test",
        &load,
        &["--idle-exit-ms", "3000"],
    );
    finish(mm, "load-test match-maker");
    assert_eq!(
        records(&admin, "loadtest.trades"),
        trades,
        "the same flow, the same trades"
    );
    assert_eq!(
        records(&admin, "orders"),
        3002,
        "the load test never wrote production orders"
    );

    // The Python examples with a user's credential: the producer as the order generator's user
    // (and refused with a wrong password), the Polars reader as the analytics readers' user.
    let py = |script: &str, user: &str, pass: &str| {
        Command::new(&python)
            .arg(format!(
                "{}/examples/python/{script}",
                env!("CARGO_MANIFEST_DIR")
            ))
            .args(["--brokers", &broker.bootstrap])
            .args(["-X", "security.protocol=SASL_PLAINTEXT"])
            .args(["-X", "sasl.mechanism=SCRAM-SHA-512"])
            .env("KAFKA_SASL_USERNAME", user)
            .env("KAFKA_SASL_PASSWORD", pass)
            .output()
            .unwrap()
    };
    let wrong = py(
        "produce_orders.py",
        "kappa-order-generator",
        "not-the-password",
    );
    assert!(!wrong.status.success(), "a wrong password was accepted");
    let produced = py(
        "produce_orders.py",
        "kappa-order-generator",
        &password("kappa-order-generator"),
    );
    assert!(
        produced.status.success(),
        "{}",
        String::from_utf8_lossy(&produced.stderr)
    );
    assert_eq!(records(&admin, "orders"), 3002 + 100);
    let read = py(
        "analytics_to_polars.py",
        "kappa-analytics-reader",
        &password("kappa-analytics-reader"),
    );
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    let summary: Value = serde_json::from_slice(&read.stdout).unwrap();
    let counted: u64 = summary["counts"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(counted as usize, analytics, "{summary}");

    // Nothing more: the broker refuses what a job has no business doing.
    for (user, topic) in [
        ("kappa-market-view", "trades"),
        ("kappa-market-view", "analytics"),
        ("kappa-order-generator", "trades"),
        ("kappa-sma-calculator", "trades"),
        ("kappa-sma-calculator", "orders"),
        ("kappa-replay", "analytics"),
        ("kappa-load-test", "orders"),
        ("kappa-match-maker", "analytics"),
        ("kappa-fix-gateway", "trades"),
        ("kappa-fix-gateway", "order-events"),
    ] {
        let e = produce(&broker, user, topic).expect_err(&format!("{user} wrote {topic}"));
        assert!(e.contains("uthoriz"), "{user} → {topic}: {e}");
    }
    // A user with no Write anywhere is refused a producer id before any topic is named.
    for topic in ["analytics", "orders"] {
        let e = produce(&broker, "kappa-analytics-reader", topic);
        assert!(e.is_err(), "kappa-analytics-reader wrote {topic}");
    }
    assert_eq!(produce(&broker, "kappa-market-view", "orders"), Ok(()));
    // Reading: market-view cannot read orders (its own writes) or another job's state.
    let reader = create_reader(
        &as_user(&broker, "kappa-market-view", &password("kappa-market-view")).reader(),
    )
    .unwrap();
    let denied = read_topic(&reader, "match-maker-snapshots", |_| {});
    assert!(
        denied.is_err(),
        "market-view read the match maker's snapshots"
    );
    std::fs::remove_dir_all(&dir).ok();
}
