//! The operational endpoints of a streaming job (a real match-maker process, on the embedded broker
//! and on a real Kafka): `/readyz` is 503 until the partitions are assigned and replayed, then 200; `/healthz`
//! is 200 while the loop polls; `/metrics` counts what was processed, shows zero lag once caught
//! up, and has a batch-latency histogram.

mod support;

use kappa_exchange::topics::TopicLayout;
use std::time::{Duration, Instant};
use support::*;

on_both_brokers!(match_maker_serves_metrics_health_and_readiness);

fn get(url: &str) -> (u16, String) {
    match ureq::get(url).timeout(Duration::from_secs(5)).call() {
        Ok(r) => (r.status(), r.into_string().unwrap()),
        Err(ureq::Error::Status(s, r)) => (s, r.into_string().unwrap()),
        Err(e) => (0, e.to_string()),
    }
}

fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn match_maker_serves_metrics_health_and_readiness(on: On) {
    let p = start(on, TopicLayout::default());
    // Enough history that replaying it keeps the job unready for a while (a real broker's group
    // join is quick).
    let mut items = flow(30_000, 11);
    // Three bad inputs: `kappa_rejects_total` counts them by reason.
    for bad in [
        &b"{not json"[..],
        b"\xff\xfe",
        br#"{"id":1000004,"instrument":"TCS","trxn_type":"SELL","quantity":-3,"price":15}"#,
    ] {
        items.push(("TCS".into(), bad.to_vec(), 0));
    }
    publish(&p, &items);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let mut mm = match_maker(&p, &["--ops-bind", &format!("127.0.0.1:{port}")]);

    // The first answer comes before the group join and the replay (≈3 s on the embedded
    // broker): not ready.
    let deadline = Instant::now() + Duration::from_secs(20);
    let first = loop {
        let (s, body) = get(&format!("{base}/readyz"));
        if s != 0 {
            break (s, body);
        }
        assert!(
            Instant::now() < deadline,
            "ops endpoint never came up: {body}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(first.0, 503, "{first:?}");

    let deadline = Instant::now() + Duration::from_secs(60);
    let metrics = loop {
        let (s, text) = get(&format!("{base}/metrics"));
        assert_eq!(s, 200);
        let consumed = sample(&text, "kappa_messages_consumed_total{job=\"match-maker\"}");
        let lag_lines: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("kappa_consumer_lag{"))
            .collect();
        if consumed == Some(items.len() as f64)
            && lag_lines.len() == 4
            && lag_lines.iter().all(|l| l.ends_with(" 0"))
        {
            break text;
        }
        assert!(Instant::now() < deadline, "never caught up:\n{text}");
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(get(&format!("{base}/readyz")).0, 200);
    assert_eq!(get(&format!("{base}/healthz")).0, 200);
    assert_eq!(
        sample(&metrics, "kappa_ready{job=\"match-maker\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&metrics, "kappa_assigned_partitions{job=\"match-maker\"}"),
        Some(4.0)
    );
    assert!(
        sample(&metrics, "kappa_items_total{job=\"match-maker\"}").unwrap() > 0.0,
        "{metrics}"
    );
    // By reason, every reason the match maker can reject with from 0 (a series born at 1 would
    // lose its first increment to `rate()`); the bad inputs counted under theirs.
    let rejects: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("kappa_rejects_total{"))
        .collect();
    let nonzero: Vec<&str> = rejects
        .iter()
        .copied()
        .filter(|l| !l.ends_with(" 0"))
        .collect();
    assert_eq!(
        nonzero,
        [
            "kappa_rejects_total{job=\"match-maker\",reason=\"malformed_json\"} 2",
            "kappa_rejects_total{job=\"match-maker\",reason=\"quantity_not_positive\"} 1",
        ],
        "{metrics}"
    );
    for zero in ["price_off_tick", "wrong_partition", "invalid_timestamp"] {
        let line = format!("kappa_rejects_total{{job=\"match-maker\",reason=\"{zero}\"}} 0");
        assert!(rejects.contains(&line.as_str()), "{metrics}");
    }
    let batches = sample(
        &metrics,
        "kappa_batch_processing_seconds_count{job=\"match-maker\"}",
    )
    .unwrap();
    let inf = sample(
        &metrics,
        "kappa_batch_processing_seconds_bucket{job=\"match-maker\",le=\"+Inf\"}",
    )
    .unwrap();
    assert!(batches > 0.0 && inf == batches, "{metrics}");
    // Every batch's commit is timed too, and takes part of the batch's time.
    let commits = sample(&metrics, "kappa_commit_seconds_count{job=\"match-maker\"}").unwrap();
    let (commit_sum, batch_sum) = (
        sample(&metrics, "kappa_commit_seconds_sum{job=\"match-maker\"}").unwrap(),
        sample(
            &metrics,
            "kappa_batch_processing_seconds_sum{job=\"match-maker\"}",
        )
        .unwrap(),
    );
    assert!(
        commits == batches && commit_sum > 0.0 && commit_sum <= batch_sum,
        "{metrics}"
    );
    let _ = mm.kill();
    let _ = mm.wait();
}
