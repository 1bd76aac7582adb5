//! End to end on the embedded broker and on a real Kafka: generator → match maker → SMA calculator
//! and profit calculator (batch mode, `--until-end`) → `analytics`, checked against direct
//! computations over the `trades` topic; Parquet output; and a restart that must publish nothing
//! twice.

mod support;

/// OHLC, volume and trade count of one bar, keyed by (instrument, window start).
type BarValues = (Decimal, Decimal, Decimal, Decimal, Decimal, i64);

use kappa_analytics::{BarEngine, Position, Ratio, WindowSpec};
use kappa_exchange::analytics::TradeDecoder;
use kappa_exchange::config;
use kappa_exchange::runtime::kafka::{read_range, read_topic, Provenance};
use kappa_exchange::topics::TopicLayout;
use kappa_exchange::wire::{AnalyticsKind, BarMessage, PnlMessage, SmaMessage, TotalsMessage};
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;
use support::*;

on_both_brokers!(
    analytics_jobs_end_to_end,
    a_backfill_into_side_topics_reproduces_the_live_analytics,
);

fn analytics(p: &Pipeline) -> Vec<(i32, Vec<u8>, Option<Provenance>)> {
    let mut v = Vec::new();
    read_topic(&reader(p), &p.topic("analytics"), |m| {
        v.push((
            m.partition(),
            m.payload().unwrap().to_vec(),
            Provenance::of(m),
        ))
    })
    .unwrap();
    v
}

/// A bar as Parquet and the topic hold it: instrument, start, end, OHLC + volume + VWAP, trades.
type BarRow = (String, i64, i64, [Decimal; 6], i64);

/// The rows of the Parquet files matching `glob`, read by Python Polars (the pinned client
/// venv `scripts/setup.sh` installs), as JSON objects.
fn python_polars_rows(glob: &Path) -> Vec<serde_json::Value> {
    let out = std::process::Command::new(clients_python())
        .args([
            "-c",
            "import sys, polars as pl; print(pl.read_parquet(sys.argv[1]).write_json())",
        ])
        .arg(glob)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn kind(payload: &[u8]) -> String {
    serde_json::from_slice::<AnalyticsKind>(payload)
        .unwrap()
        .kind
}

fn analytics_jobs_end_to_end(on: On) {
    let p = start(on, TopicLayout::default());
    let items = flow(15_000, 17);
    // Paced: on a real broker the exchange's time is the arrival time of each order, and the
    // windows need a few seconds of it.
    publish_at(&p, &items, 5_000.0);
    let mut mm = match_maker(&p, &["--idle-exit-ms", "1500"]);
    wait(&mut mm, Duration::from_secs(120));
    wait_stable(&p, "trades");

    let dir = std::env::temp_dir().join(format!("kx-analytics-{}-{on:?}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let parquet = dir.to_str().unwrap();
    let args = [
        "--until-end",
        "--window",
        "100ms",
        "--sma",
        "3,5",
        "--parquet-dir",
        parquet,
    ];
    let mut sma = job(&p, env!("CARGO_BIN_EXE_sma-calculator"), &args);
    let mut pnl = job(&p, env!("CARGO_BIN_EXE_profit-calculator"), &args);
    wait(&mut sma, Duration::from_secs(120));
    wait(&mut pnl, Duration::from_secs(120));
    let out = analytics(&p);
    let of_kind = |k: &str| out.iter().filter(|(_, v, _)| kind(v) == k).count();
    // How many 100 ms windows the trades span depends on when the broker appended the orders
    // (their exchange time): a loaded machine can append a paced flow in a few bursts (seen: 15
    // bars where an idle one makes 40+). What matters is checked below, bar by bar, against the
    // Polars engine over the same trades.
    assert!(
        of_kind("bar") > 5 && of_kind("bar") == of_kind("sma"),
        "bars {} smas {}",
        of_kind("bar"),
        of_kind("sma")
    );
    assert!(of_kind("pnl") > 100 && of_kind("totals") > 2);

    // Bars: equal to the Polars engine run directly over each trades partition.
    let instruments = config::load_instruments(None).unwrap();
    let mut decoder = TradeDecoder::new(instruments.clone(), usize::MAX);
    let r = reader(&p);
    let mut expected: BTreeMap<(String, i64), BarValues> = BTreeMap::new();
    let mut trades_by_partition: Vec<Vec<kappa_analytics::TradeRow>> = Vec::new();
    for q in 0..4 {
        let (low, high) = r
            .fetch_watermarks(&p.topic("trades"), q, Duration::from_secs(5))
            .unwrap();
        let mut rows = Vec::new();
        read_range(&r, &p.topic("trades"), q, low, high, |m| {
            rows.push(decoder.decode(m.payload().unwrap()).unwrap())
        })
        .unwrap();
        let mut e = BarEngine::new(
            WindowSpec {
                length_ms: 100,
                lateness_ms: 0,
            },
            &[],
        );
        let mut bars = e.push(&rows).unwrap().bars;
        bars.extend(e.flush().unwrap());
        for b in bars {
            let sym = decoder.symbol(b.instrument);
            let v = (
                decoder.price(b.instrument, b.open),
                decoder.price(b.instrument, b.high),
                decoder.price(b.instrument, b.low),
                decoder.price(b.instrument, b.close),
                decoder.qty(b.instrument, b.volume),
                b.trades,
            );
            expected.insert((sym, b.start_ms), v);
        }
        trades_by_partition.push(rows);
    }
    let bars: Vec<BarMessage> = out
        .iter()
        .filter(|(_, v, _)| kind(v) == "bar")
        .map(|(_, v, _)| serde_json::from_slice(v).unwrap())
        .collect();
    let got: BTreeMap<(String, i64), _> = bars
        .iter()
        .map(|b| {
            (
                (b.instrument.clone(), b.start_ms),
                (b.open, b.high, b.low, b.close, b.volume, b.trades),
            )
        })
        .collect();
    assert_eq!(got, expected);
    let total_trades: i64 = bars.iter().map(|b| b.trades).sum();
    assert_eq!(
        total_trades as usize,
        trades_by_partition.iter().map(Vec::len).sum::<usize>(),
        "every trade is in exactly one bar"
    );
    for b in &bars {
        assert!(
            b.low <= b.vwap && b.vwap <= b.high,
            "vwap inside the range: {b:?}"
        );
    }

    // SMAs: the mean of the last n closes of the instrument, null until n bars exist.
    let smas: Vec<SmaMessage> = out
        .iter()
        .filter(|(_, v, _)| kind(v) == "sma")
        .map(|(_, v, _)| serde_json::from_slice(v).unwrap())
        .collect();
    let mut closes: HashMap<String, Vec<Decimal>> = HashMap::new();
    let mut by_instrument: BTreeMap<String, Vec<&BarMessage>> = BTreeMap::new();
    for b in &bars {
        by_instrument
            .entry(b.instrument.clone())
            .or_default()
            .push(b);
    }
    let mut checked = 0;
    for (sym, list) in &by_instrument {
        let c = closes.entry(sym.clone()).or_default();
        for b in list {
            c.push(b.close);
            let s = smas
                .iter()
                .find(|s| s.instrument == *sym && s.end_ms == b.end_ms)
                .expect("an sma per bar");
            for v in &s.sma {
                let want = (c.len() >= v.n).then(|| {
                    (c[c.len() - v.n..].iter().sum::<Decimal>() / Decimal::from(v.n as u64))
                        .round_dp(6)
                });
                assert_eq!(v.value, want, "{sym} sma{} at {}", v.n, b.end_ms);
                checked += 1;
            }
        }
    }
    assert!(checked > 40);

    // P&L: positions agree with the trades, per trader and instrument; one trader's realized P&L
    // equals an independent replay of its trades.
    let pnls: Vec<PnlMessage> = out
        .iter()
        .filter(|(_, v, _)| kind(v) == "pnl")
        .map(|(_, v, _)| serde_json::from_slice(v).unwrap())
        .collect();
    let mut latest: BTreeMap<(String, String), &PnlMessage> = BTreeMap::new();
    for m in &pnls {
        let e = latest
            .entry((m.trader.clone(), m.instrument.clone()))
            .or_insert(m);
        if m.end_ms >= e.end_ms {
            *e = m;
        }
    }
    let mut positions: BTreeMap<(String, String), Position> = BTreeMap::new();
    for rows in &trades_by_partition {
        for t in rows {
            let sym = decoder.symbol(t.instrument);
            positions
                .entry((decoder.trader(t.buyer).to_string(), sym.clone()))
                .or_default()
                .fill(true, t.quantity, t.price)
                .unwrap();
            positions
                .entry((decoder.trader(t.seller).to_string(), sym))
                .or_default()
                .fill(false, t.quantity, t.price)
                .unwrap();
        }
    }
    assert_eq!(
        latest.len(),
        positions.len(),
        "every trader/instrument that traded is reported"
    );
    let mut net: BTreeMap<String, Decimal> = BTreeMap::new();
    for ((trader, sym), m) in &latest {
        let pos = &positions[&(trader.clone(), sym.clone())];
        let id = instruments.id(sym).unwrap();
        assert_eq!(
            m.position,
            decoder.qty(id.0 as u32, pos.quantity),
            "{trader} {sym}"
        );
        let unit = instruments.spec(id).tick_size * instruments.spec(id).lot_size;
        assert_eq!(
            m.realized,
            pos.realized().round(unit, 6).unwrap(),
            "{trader} {sym} realized"
        );
        assert_eq!(m.total, m.realized + m.unrealized);
        *net.entry(sym.clone()).or_default() += m.position;
    }
    assert!(
        net.values().all(|n| n.is_zero()),
        "positions net to zero per instrument: {net:?}"
    );

    // Totals: per partition in window order, traders by name; the last ones equal every trader's
    // realized + unrealized P&L at the last price, computed here from the trades.
    let totals: Vec<TotalsMessage> = out
        .iter()
        .filter(|(_, v, _)| kind(v) == "totals")
        .map(|(_, v, _)| serde_json::from_slice(v).unwrap())
        .collect();
    let mut last: BTreeMap<i32, &TotalsMessage> = BTreeMap::new();
    for t in &totals {
        assert!(t.traders.windows(2).all(|w| w[0].trader < w[1].trader));
        if let Some(prev) = last.insert(t.partition, t) {
            assert!(
                prev.end_ms < t.end_ms,
                "window order in partition {}",
                t.partition
            );
        }
    }
    for (q, rows) in trades_by_partition.iter().enumerate() {
        let Some(t) = last.get(&(q as i32)) else {
            assert!(
                rows.is_empty(),
                "partition {q} traded and published no totals"
            );
            continue;
        };
        let mut want: BTreeMap<String, Decimal> = BTreeMap::new();
        let mut last_price: BTreeMap<u32, i64> = BTreeMap::new();
        for r in rows {
            last_price.insert(r.instrument, r.price);
        }
        for (&i, &price) in &last_price {
            let sym = decoder.symbol(i);
            let id = instruments.id(&sym).unwrap();
            let unit = instruments.spec(id).tick_size * instruments.spec(id).lot_size;
            for ((trader, s), pos) in &positions {
                if *s == sym {
                    let total = pos.realized().checked_add(pos.unrealized(price).unwrap());
                    assert_eq!(total, Some(Ratio::int(pos.total(price).unwrap())));
                    *want.entry(trader.clone()).or_default() +=
                        Decimal::from_i128_with_scale(pos.total(price).unwrap(), 0) * unit;
                }
            }
        }
        let got: BTreeMap<String, Decimal> = t
            .traders
            .iter()
            .map(|x| (x.trader.clone(), x.total))
            .collect();
        let want: BTreeMap<String, Decimal> =
            want.into_iter().map(|(k, v)| (k, v.round_dp(6))).collect();
        assert_eq!(got, want, "final totals of partition {q}");
    }
    // The leaderboard they make: ranked by total.
    let mut view = kappa_exchange::analytics::leaderboard::Leaderboard::default();
    for t in &totals {
        view.apply(t.clone());
    }
    let board = view.board(10).expect("a leaderboard");
    assert_eq!(board.top.len(), 10);
    assert!(board
        .top
        .windows(2)
        .all(|w| w[0].total >= w[1].total && w[0].rank + 1 == w[1].rank));

    // Parquet: one file per closed window and partition, holding the same bars — read back by
    // an independent reader (Python Polars, as `data/parquet_layout.md` shows traders).
    let mut files = 0;
    let mut rows = 0;
    for entry in std::fs::read_dir(Path::new(parquet).join("bars")).unwrap() {
        for f in std::fs::read_dir(entry.unwrap().path()).unwrap() {
            rows += kappa_analytics::parquet::row_count(&f.unwrap().path()).unwrap();
            files += 1;
        }
    }
    assert_eq!(rows, bars.len());
    assert!(files >= 10);
    let read = python_polars_rows(&Path::new(parquet).join("bars/*/*.parquet"));
    let mut from_parquet: Vec<BarRow> = read
        .iter()
        .map(|r| {
            let d = |k: &str| r[k].as_str().unwrap().parse::<Decimal>().unwrap();
            (
                r["instrument"].as_str().unwrap().to_string(),
                r["start_ms"].as_i64().unwrap(),
                r["end_ms"].as_i64().unwrap(),
                [
                    d("open"),
                    d("high"),
                    d("low"),
                    d("close"),
                    d("volume"),
                    d("vwap"),
                ],
                r["trades"].as_i64().unwrap(),
            )
        })
        .collect();
    let mut from_topic: Vec<BarRow> = bars
        .iter()
        .map(|b| {
            (
                b.instrument.clone(),
                b.start_ms,
                b.end_ms,
                [b.open, b.high, b.low, b.close, b.volume, b.vwap],
                b.trades,
            )
        })
        .collect();
    from_parquet.sort();
    from_topic.sort();
    assert!(
        from_parquet == from_topic,
        "Parquet bars differ from the topic's"
    );
    assert!(Path::new(parquet).join("pnl").is_dir());

    // Sequences per source partition and job are exactly 1..n (no gap, no duplicate).
    let mut seqs: HashMap<(i32, bool), Vec<u64>> = HashMap::new();
    let mut unsequenced = 0;
    for (_, v, prov) in &out {
        match prov {
            Some(prov) => seqs
                .entry((prov.partition, matches!(kind(v).as_str(), "pnl" | "totals")))
                .or_default()
                .push(prov.seq),
            None => unsequenced += 1,
        }
    }
    for ((source, pnl), mut s) in seqs {
        s.sort_unstable();
        assert_eq!(
            s,
            (1..=s.len() as u64).collect::<Vec<_>>(),
            "partition {source} (pnl: {pnl})"
        );
    }
    assert_eq!(unsequenced, 0, "every analytics output is in a sequence");

    // A restart (same groups, batch mode again) publishes nothing twice and leaves the files as
    // they were (its snapshots cover the whole input: nothing to replay).
    fn parquet_files(dir: &Path) -> BTreeMap<std::path::PathBuf, Vec<u8>> {
        let mut all = BTreeMap::new();
        for kind in ["bars", "pnl"] {
            for w in std::fs::read_dir(dir.join(kind)).unwrap() {
                for f in std::fs::read_dir(w.unwrap().path()).unwrap() {
                    let path = f.unwrap().path();
                    all.insert(
                        path.strip_prefix(dir).unwrap().to_path_buf(),
                        std::fs::read(&path).unwrap(),
                    );
                }
            }
        }
        all
    }
    let parquet_before = parquet_files(Path::new(parquet));
    let before = out.len();
    let mut sma = job(&p, env!("CARGO_BIN_EXE_sma-calculator"), &args);
    let mut pnl = job(&p, env!("CARGO_BIN_EXE_profit-calculator"), &args);
    wait(&mut sma, Duration::from_secs(120));
    wait(&mut pnl, Duration::from_secs(120));
    let after = analytics(&p);
    let extra: Vec<String> = after[before.min(after.len())..]
        .iter()
        .map(|(q, v, prov)| format!("{q} {prov:?} {}", String::from_utf8_lossy(v)))
        .collect();
    assert_eq!(
        after.len(),
        before,
        "nothing duplicated after a restart: {extra:?}"
    );
    assert!(parquet_files(Path::new(parquet)) == parquet_before);

    // A backfill (fresh groups, side topics, another directory) regenerates the same history.
    p.create_topics("replay.", &TopicLayout::default());
    let dir2 = dir.join("backfill");
    let backfill = |group| {
        [
            &args[..args.len() - 1],
            &[
                dir2.to_str().unwrap(),
                "--group",
                group,
                "--output-prefix",
                "replay.",
            ],
        ]
        .concat()
    };
    let mut sma = job(
        &p,
        env!("CARGO_BIN_EXE_sma-calculator"),
        &backfill("backfill-bars"),
    );
    let mut pnl = job(
        &p,
        env!("CARGO_BIN_EXE_profit-calculator"),
        &backfill("backfill-pnl"),
    );
    wait(&mut sma, Duration::from_secs(120));
    wait(&mut pnl, Duration::from_secs(120));
    let regenerated = parquet_files(&dir2);
    let differ: Vec<_> = parquet_before
        .keys()
        .chain(regenerated.keys())
        .filter(|k| parquet_before.get(*k) != regenerated.get(*k))
        .collect();
    assert!(
        differ.is_empty(),
        "same input, byte-identical Parquet history; differ: {differ:?} ({} vs {} files)",
        parquet_before.len(),
        regenerated.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn a_backfill_into_side_topics_reproduces_the_live_analytics(on: On) {
    let p = start(on, TopicLayout::default());
    publish_at(&p, &flow(4_000, 23), 4_000.0);
    let mut mm = match_maker(&p, &["--idle-exit-ms", "1500"]);
    wait(&mut mm, Duration::from_secs(120));
    wait_stable(&p, "trades");
    p.create_topics("replay.", &TopicLayout::default());
    let live = ["--until-end", "--window", "100ms"];
    let mut sma = job(&p, env!("CARGO_BIN_EXE_sma-calculator"), &live);
    wait(&mut sma, Duration::from_secs(120));
    // The Airflow backfill's command line: a fresh group, outputs to replay.* topics.
    let backfill = [
        &live[..],
        &[
            "--group",
            "backfill-1",
            "--from-beginning",
            "--output-prefix",
            "replay.",
        ],
    ]
    .concat();
    let mut sma = job(&p, env!("CARGO_BIN_EXE_sma-calculator"), &backfill);
    wait(&mut sma, Duration::from_secs(120));
    let payloads = |topic: &str| {
        let mut v = Vec::new();
        read_topic(&reader(&p), &p.topic(topic), |m| {
            v.push((m.partition(), m.payload().unwrap().to_vec()))
        })
        .unwrap();
        v
    };
    let (original, replayed) = (payloads("analytics"), payloads("replay.analytics"));
    // Exchange time is the broker's append time: on a broker that just started, the first
    // orders can arrive in one burst (topic leaders still being elected) and span few windows,
    // so ask only for bars and SMAs of several instruments; the point is the equality below.
    assert!(original.len() >= 6, "{}", original.len());
    assert_eq!(
        original, replayed,
        "the backfill must reproduce the live outputs byte for byte"
    );
}
