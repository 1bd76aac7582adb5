//! What a streaming job counts about itself, and its Prometheus text rendering: counters of the
//! processing loop ([`Counters`]), health and readiness, consumer lag, recovery progress and the
//! batch latency histogram. The loop ([`super::processor`]) writes them; the ops endpoints
//! ([`super::ops`]) and the demo read them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Live counters of a processing loop, readable from other threads.
#[derive(Debug, Default)]
pub struct Counters {
    /// Input messages processed, each offset once per process (see `replayed`).
    pub consumed: AtomicU64,
    /// Input messages processed again to rebuild state: the tail after a snapshot, replayed on
    /// an assignment or after an aborted transaction, with its outputs suppressed.
    pub replayed: AtomicU64,
    /// Input messages sent to the rejects topic (fresh input only), and the same by reason code.
    /// Reasons are `&'static str` codes of the program (decode errors, engine reasons,
    /// `wrong_partition`, `late_trade`, …), so the map — and the metric's label values — are
    /// bounded by the code, never by input. Written through [`Counters::reject`].
    pub rejected: AtomicU64,
    pub rejected_by_reason: Mutex<BTreeMap<&'static str, u64>>,
    pub produced: AtomicU64,
    pub suppressed: AtomicU64,
    /// Job-specific count (trades for the match maker, bars for the SMA calculator, …).
    pub items: AtomicU64,
    pub state_updates: AtomicU64,
    /// State snapshots written, their total size (serialized state, and compressed as written)
    /// and the time spent taking them (serialize, compress, send).
    pub snapshots: AtomicU64,
    pub snapshot_bytes: AtomicU64,
    pub snapshot_state_bytes: AtomicU64,
    pub snapshot_micros: AtomicU64,
    /// Transactions committed and aborted.
    pub commits: AtomicU64,
    pub aborts: AtomicU64,
    /// Input partitions currently assigned and recovered.
    pub assigned: AtomicU64,
    /// Health and readiness, lag, recovery progress, and the batch latency histogram.
    pub ops: LoopStatus,
}

impl Counters {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    /// Registers the reasons a job can reject with, at 0 (`Job::reject_reasons`).
    pub fn expect_rejects(&self, reasons: &[&'static str]) {
        let mut map = self
            .rejected_by_reason
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for r in reasons {
            map.entry(r).or_default();
        }
    }

    /// Counts one reject, by reason.
    pub fn reject(&self, reason: &'static str) {
        Self::add(&self.rejected, 1);
        let mut map = self
            .rejected_by_reason
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        debug_assert!(
            map.is_empty() || map.contains_key(reason),
            "reject reason {reason:?} is missing from the job's reject_reasons()"
        );
        *map.entry(reason).or_default() += 1;
    }
}

/// The loop is unhealthy when it has not polled for this long (a wedged loop, not a quiet topic:
/// an idle loop still polls every 100 ms).
pub const STALL_AFTER: Duration = Duration::from_secs(30);

/// How often the loop refreshes consumer lag (it asks the broker for high watermarks).
const LAG_EVERY: Duration = Duration::from_secs(5);

fn now_ms() -> u64 {
    chrono::Utc::now().timestamp_millis().max(0) as u64
}

/// Upper bounds (seconds) of the batch-latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A fixed-bucket histogram, lock-free.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Non-cumulative counts per bucket; the last slot is +Inf.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, seconds: f64) {
        let i = LATENCY_BUCKETS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((seconds * 1e6).round() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Appends the histogram in Prometheus text format.
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            cumulative += b.load(Ordering::Relaxed);
            let le = LATENCY_BUCKETS
                .get(i)
                .map_or("+Inf".to_string(), |v| v.to_string());
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(
            out,
            "{name}_count{{{labels}}} {}",
            self.count.load(Ordering::Relaxed)
        );
    }
}

/// What the processing loop reports about itself.
#[derive(Debug, Default)]
pub struct LoopStatus {
    last_poll_ms: AtomicU64,
    ready: AtomicBool,
    last_lag_ms: AtomicU64,
    /// (input topic, partition) → messages behind the high watermark.
    lag: Mutex<BTreeMap<(String, i32), i64>>,
    /// Input partition → input messages still to replay before it is live.
    recovering: Mutex<BTreeMap<i32, i64>>,
    /// Time to process one batch: handle every message, emit, produce (seconds).
    pub batch_seconds: Histogram,
    /// Of that, the commit: delivering the batch's outputs and committing the transaction (or the
    /// offsets). On a real broker this is most of a batch's time (BENCHMARKS.md, issue 14).
    pub commit_seconds: Histogram,
}

impl LoopStatus {
    /// The loop is about to poll.
    pub fn polled(&self) {
        self.last_poll_ms.store(now_ms(), Ordering::Relaxed);
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Whether the loop has polled within [`STALL_AFTER`].
    pub fn is_healthy(&self) -> bool {
        let last = self.last_poll_ms.load(Ordering::Relaxed);
        last > 0 && now_ms().saturating_sub(last) < STALL_AFTER.as_millis() as u64
    }

    /// True (and restarts the timer) when the lag should be refreshed.
    pub fn lag_due(&self) -> bool {
        let now = now_ms();
        let last = self.last_lag_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= LAG_EVERY.as_millis() as u64 {
            self.last_lag_ms.store(now, Ordering::Relaxed);
            true
        } else {
            false
        }
    }

    /// Sets the input messages partition `p` still has to replay (0: live; removed).
    pub fn set_recovering(&self, p: i32, remaining: i64) {
        let mut map = self.recovering.lock().unwrap_or_else(|e| e.into_inner());
        if remaining > 0 {
            map.insert(p, remaining);
        } else {
            map.remove(&p);
        }
    }

    /// Partitions still replaying, with what they have left.
    pub fn recovering(&self) -> BTreeMap<i32, i64> {
        self.recovering
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Forgets revoked partitions' lag and recovery.
    pub fn forget(&self, partitions: &[i32]) {
        let mut r = self.recovering.lock().unwrap_or_else(|e| e.into_inner());
        let mut l = self.lag.lock().unwrap_or_else(|e| e.into_inner());
        for p in partitions {
            r.remove(p);
            l.retain(|(_, q), _| q != p);
        }
    }

    /// Replaces the lag of `topic` with `lag` (partition → messages behind).
    pub fn set_lag(&self, topic: &str, lag: Vec<(i32, i64)>) {
        let mut map = self.lag.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|(t, _), _| t != topic);
        for (p, l) in lag {
            map.insert((topic.to_string(), p), l);
        }
    }
}

/// Writes one metric family in Prometheus text format: its HELP and TYPE lines, then one sample
/// per `(extra labels, value)`, labelled with `job` plus the extra labels (e.g. `,topic="orders"`).
pub fn write_family<V: std::fmt::Display>(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    job: &str,
    samples: &[(String, V)],
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, v) in samples {
        let _ = writeln!(out, "{name}{{job=\"{job}\"{labels}}} {v}");
    }
}

/// Renders `counters` of job `job` in Prometheus text format.
pub fn render(job: &str, c: &Counters) -> String {
    let mut out = String::with_capacity(4096);
    let mut one = |name: &str, kind: &str, help: &str, v: &dyn std::fmt::Display| {
        write_family(&mut out, name, kind, help, job, &[(String::new(), v)]);
    };
    let counters: [(&str, &str, &AtomicU64); 12] = [
        (
            "kappa_messages_consumed_total",
            "Input messages processed (each offset once per process).",
            &c.consumed,
        ),
        (
            "kappa_messages_replayed_total",
            "Input messages processed again to rebuild state after a reassignment.",
            &c.replayed,
        ),
        (
            "kappa_messages_produced_total",
            "Output messages produced.",
            &c.produced,
        ),
        (
            "kappa_outputs_suppressed_total",
            "Outputs not republished while replaying (already on the broker).",
            &c.suppressed,
        ),
        (
            "kappa_items_total",
            "Job items: trades (match maker), bars (SMA), P&L rows (profit).",
            &c.items,
        ),
        (
            "kappa_state_updates_total",
            "Conflated state messages (book depth).",
            &c.state_updates,
        ),
        (
            "kappa_snapshots_total",
            "State snapshots written to the changelog topic.",
            &c.snapshots,
        ),
        (
            "kappa_snapshot_bytes_total",
            "Compressed bytes of the snapshots written.",
            &c.snapshot_bytes,
        ),
        (
            "kappa_snapshot_state_bytes_total",
            "Serialized state bytes of the snapshots written, before compression.",
            &c.snapshot_state_bytes,
        ),
        (
            "kappa_snapshot_micros_total",
            "Time spent taking snapshots (serialize, compress, send), in microseconds.",
            &c.snapshot_micros,
        ),
        (
            "kappa_transactions_committed_total",
            "Kafka transactions committed (outputs, snapshots and input offsets together).",
            &c.commits,
        ),
        (
            "kappa_transactions_aborted_total",
            "Kafka transactions aborted (the state is rebuilt from the last commit).",
            &c.aborts,
        ),
    ];
    for (name, help, v) in counters {
        one(name, "counter", help, &Counters::get(v));
    }
    one(
        "kappa_assigned_partitions",
        "gauge",
        "Input partitions assigned and recovered.",
        &Counters::get(&c.assigned),
    );
    one(
        "kappa_ready",
        "gauge",
        "1 when partitions are assigned and their state rebuilt.",
        &u8::from(c.ops.is_ready()),
    );
    let last = c.ops.last_poll_ms.load(Ordering::Relaxed);
    let age = if last == 0 {
        -1.0
    } else {
        now_ms().saturating_sub(last) as f64 / 1e3
    };
    one(
        "kappa_last_poll_age_seconds",
        "gauge",
        "Seconds since the loop last polled (-1: never).",
        &age,
    );
    let lag = c.ops.lag.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let samples: Vec<(String, i64)> = lag
        .iter()
        .map(|((topic, p), lag)| (format!(",topic=\"{topic}\",partition=\"{p}\""), *lag))
        .collect();
    write_family(
        &mut out,
        "kappa_consumer_lag",
        "gauge",
        "Messages behind the high watermark, per input partition.",
        job,
        &samples,
    );
    let recovering = c.ops.recovering();
    let samples: Vec<(String, i64)> = recovering
        .iter()
        .map(|(p, left)| (format!(",partition=\"{p}\""), *left))
        .collect();
    write_family(
        &mut out,
        "kappa_recovery_remaining_messages",
        "gauge",
        "Input messages a partition still replays before it is live (absent: live).",
        job,
        &samples,
    );
    for (name, help, histogram) in [
        (
            "kappa_batch_processing_seconds",
            "Time to process one batch of input.",
            &c.ops.batch_seconds,
        ),
        (
            "kappa_commit_seconds",
            "Time to deliver one batch's outputs and commit its transaction (or offsets).",
            &c.ops.commit_seconds,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        histogram.render(&mut out, name, &format!("job=\"{job}\""));
    }
    // By reason, every reason the job registered from 0; with none registered and no reject
    // yet, one sample without the label (an empty label is no label to Prometheus), so
    // `sum by (job)` reads 0 rather than nothing.
    let by_reason = c
        .rejected_by_reason
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let samples: Vec<(String, u64)> = if by_reason.is_empty() {
        vec![(String::new(), 0)]
    } else {
        by_reason
            .into_iter()
            .map(|(reason, n)| (format!(",reason=\"{reason}\""), n))
            .collect()
    };
    write_family(
        &mut out,
        "kappa_rejects_total",
        "counter",
        "Input messages sent to the rejects topic, by reason code.",
        job,
        &samples,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_with_sum_and_count() {
        let h = Histogram::default();
        for s in [0.00005, 0.0003, 0.0003, 3.0] {
            h.observe(s);
        }
        let mut out = String::new();
        h.render(&mut out, "x", "job=\"j\"");
        assert!(
            out.contains("x_bucket{job=\"j\",le=\"0.0001\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("x_bucket{job=\"j\",le=\"0.00025\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("x_bucket{job=\"j\",le=\"0.0005\"} 3\n"),
            "{out}"
        );
        assert!(out.contains("x_bucket{job=\"j\",le=\"2.5\"} 3\n"), "{out}");
        assert!(out.contains("x_bucket{job=\"j\",le=\"+Inf\"} 4\n"), "{out}");
        assert!(out.contains("x_sum{job=\"j\"} 3.00065\n"), "{out}");
        assert!(out.contains("x_count{job=\"j\"} 4\n"), "{out}");
    }

    #[test]
    fn metrics_render_counters_lag_readiness_and_health() {
        let c = Counters::default();
        Counters::add(&c.consumed, 7);
        assert!(
            render("match-maker", &c).contains("kappa_rejects_total{job=\"match-maker\"} 0\n"),
            "zero before the first reject"
        );
        c.expect_rejects(&["malformed_json", "wrong_partition", "late_trade"]);
        let text = render("match-maker", &c);
        assert!(
            text.contains("kappa_rejects_total{job=\"match-maker\",reason=\"late_trade\"} 0\n")
                && !text.contains("kappa_rejects_total{job=\"match-maker\"}"),
            "registered reasons from 0: {text}"
        );
        c.reject("malformed_json");
        c.reject("wrong_partition");
        c.reject("malformed_json");
        c.ops.set_lag("orders", vec![(0, 5), (3, 0)]);
        c.ops.set_lag("orders", vec![(1, 9)]);
        assert!(!c.ops.is_healthy() && !c.ops.is_ready());
        c.ops.polled();
        c.ops.set_ready(true);
        assert!(c.ops.is_healthy() && c.ops.is_ready());
        let text = render("match-maker", &c);
        assert!(
            text.contains("kappa_messages_consumed_total{job=\"match-maker\"} 7\n"),
            "{text}"
        );
        for (reason, n) in [
            ("malformed_json", 2),
            ("wrong_partition", 1),
            ("late_trade", 0),
        ] {
            let line =
                format!("kappa_rejects_total{{job=\"match-maker\",reason=\"{reason}\"}} {n}\n");
            assert!(text.contains(&line), "{text}");
        }
        assert!(
            !text.contains("kappa_rejects_total{job=\"match-maker\"}"),
            "no unlabelled sample once reasons exist: {text}"
        );
        assert_eq!(Counters::get(&c.rejected), 3);
        assert!(
            text.contains("kappa_ready{job=\"match-maker\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "kappa_consumer_lag{job=\"match-maker\",topic=\"orders\",partition=\"1\"} 9\n"
            ),
            "{text}"
        );
        assert!(
            !text.contains("partition=\"0\""),
            "a refresh replaces the topic's lag: {text}"
        );
        // Every sample line is `name{labels} value` with a numeric value.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "missing from the job's reject_reasons()")]
    fn a_reject_reason_the_job_did_not_list_fails_a_debug_build() {
        let c = Counters::default();
        c.expect_rejects(&["malformed_json"]);
        c.reject("late_trade");
    }
}
