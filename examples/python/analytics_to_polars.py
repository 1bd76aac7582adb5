#!/usr/bin/env python3
"""Read Kappa Exchange's `analytics` serving topic into Polars DataFrames: bars with their SMAs,
P&L per trader and instrument, and per-partition totals.

Every message is JSON with a `kind` (schemas/topics/analytics.json). Prices, quantities and money
are exact decimals written as JSON numbers: they are parsed as `Decimal` (never float) and kept as
Polars `Decimal(38, 6)` columns (the exchange publishes money rounded to 6 places), so sums and
comparisons are exact. The topic is written in Kafka transactions: read it `read_committed`.

    pip install confluent-kafka==2.12.1 polars==2.1.0
    python3 examples/python/analytics_to_polars.py --brokers 127.0.0.1:9092 [--parquet-dir out/]

Reads from the beginning to the current end of every partition, then prints one JSON line: counts
per kind, and per instrument the bar count, total volume and last close (exact decimal strings).
"""

import argparse
import json
import os
import sys
from decimal import Decimal

import polars as pl
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

MONEY = pl.Decimal(38, 6)
BAR_DECIMALS = ["open", "high", "low", "close", "volume", "vwap"]
PNL_DECIMALS = ["position", "avg_price", "realized", "unrealized", "total", "mark", "mark_sma",
                "unrealized_sma", "volume", "notional", "window_bought", "window_sold"]


def read_analytics(brokers, topic, prefix, config):
    """Every message of `topic` up to its current end, decoded (decimals as Decimal)."""
    consumer = Consumer({
        "bootstrap.servers": brokers,
        # Partitions are assigned below: the group is never joined and nothing is committed, but
        # librdkafka looks up its coordinator, so the user needs Describe on it (the jobs' own
        # readers use this group the same way; the kappa-analytics-reader user is allowed it).
        "group.id": prefix + "kappa-reader",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
        "enable.partition.eof": True,
        **config,
    })
    meta = consumer.list_topics(topic, timeout=10)
    info = meta.topics.get(topic)
    if info is None or info.error is not None:
        sys.exit(f"topic {topic} is not available: {info.error if info else 'missing'}")
    parts = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in info.partitions]
    consumer.assign(parts)
    pending = {p.partition for p in parts}
    messages = []
    while pending:
        msg = consumer.poll(10)
        if msg is None:
            sys.exit(f"no progress for 10 s on partitions {sorted(pending)}")
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                pending.discard(msg.partition())
                continue
            sys.exit(f"consumer error: {msg.error()}")
        messages.append(json.loads(msg.value(), parse_float=Decimal))
    consumer.close()
    return messages


def frames(messages):
    """(bars joined with their SMAs, pnl, totals) as Polars DataFrames."""
    by_kind = {"bar": [], "sma": [], "pnl": [], "totals": []}
    for m in messages:
        by_kind.setdefault(m["kind"], []).append(m)

    bars = pl.DataFrame(
        [{k: b[k] for k in ["instrument", "start_ms", "end_ms", *BAR_DECIMALS, "trades"]}
         for b in by_kind["bar"]],
        schema={"instrument": pl.String, "start_ms": pl.Int64, "end_ms": pl.Int64,
                **{k: MONEY for k in BAR_DECIMALS}, "trades": pl.Int64},
    )
    # One column per SMA length (sma_5, sma_20, ...), null until enough bars exist.
    sma_rows = []
    for s in by_kind["sma"]:
        row = {"instrument": s["instrument"], "end_ms": s["end_ms"]}
        for point in s["sma"]:
            row[f"sma_{point['n']}"] = point["value"]
        sma_rows.append(row)
    sma_cols = sorted({k for r in sma_rows for k in r if k.startswith("sma_")},
                      key=lambda c: int(c[4:]))
    smas = pl.DataFrame(
        [{"instrument": r["instrument"], "end_ms": r["end_ms"], **{c: r.get(c) for c in sma_cols}}
         for r in sma_rows],
        schema={"instrument": pl.String, "end_ms": pl.Int64, **{c: MONEY for c in sma_cols}},
    )
    bars = bars.join(smas, on=["instrument", "end_ms"], how="left").with_columns(
        pl.from_epoch("start_ms", time_unit="ms").alias("start"),
        pl.from_epoch("end_ms", time_unit="ms").alias("end"),
    ).sort(["instrument", "start_ms"])

    pnl = pl.DataFrame(
        [{k: p.get(k) for k in ["trader", "instrument", "end_ms", *PNL_DECIMALS]}
         for p in by_kind["pnl"]],
        schema={"trader": pl.String, "instrument": pl.String, "end_ms": pl.Int64,
                **{k: MONEY for k in PNL_DECIMALS}},
    ).sort(["trader", "instrument", "end_ms"])

    totals = pl.DataFrame(
        [{"partition": t["partition"], "end_ms": t["end_ms"], "trader": x["trader"],
          "total": x["total"]} for t in by_kind["totals"] for x in t["traders"]],
        schema={"partition": pl.Int32, "end_ms": pl.Int64, "trader": pl.String, "total": MONEY},
    )
    return bars, pnl, totals, {k: len(v) for k, v in by_kind.items()}


def exact(d):
    """A decimal's plain text without trailing zeros: 1650, 15.05 (never 1.65E+3)."""
    return format(d.normalize(), "f")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--brokers", required=True)
    prefix = os.environ.get("KAFKA_TOPIC_PREFIX", "")
    ap.add_argument("--topic", default=prefix + "analytics")
    ap.add_argument("--parquet-dir", help="also write bars.parquet, pnl.parquet, totals.parquet")
    ap.add_argument("-X", action="append", default=[], metavar="KEY=VALUE",
                    help="librdkafka setting, e.g. -X security.protocol=SASL_SSL")
    args = ap.parse_args()
    config = dict(kv.split("=", 1) for kv in args.X)
    if os.environ.get("KAFKA_SASL_USERNAME"):  # the user's credential, as the jobs read it
        config["sasl.username"] = os.environ["KAFKA_SASL_USERNAME"]
        config["sasl.password"] = os.environ.get("KAFKA_SASL_PASSWORD", "")

    bars, pnl, totals, counts = frames(read_analytics(args.brokers, args.topic, prefix, config))
    if args.parquet_dir:
        os.makedirs(args.parquet_dir, exist_ok=True)
        for name, df in [("bars", bars), ("pnl", pnl), ("totals", totals)]:
            df.write_parquet(os.path.join(args.parquet_dir, f"{name}.parquet"))

    per_instrument = (
        bars.group_by("instrument")
        .agg(pl.len().alias("bars"), pl.col("volume").sum().alias("volume"),
             pl.col("close").sort_by("start_ms").last().alias("last_close"),
             pl.col("end_ms").max().alias("last_end_ms"))
        .sort("instrument")
    )
    latest_pnl = pnl.group_by(["trader", "instrument"]).agg(pl.all().sort_by("end_ms").last())
    sma_cols = [c for c in bars.columns if c.startswith("sma_")]
    print(json.dumps({
        "counts": counts,
        "bars_with_sma": bars.filter(pl.col(sma_cols[0]).is_not_null()).height if sma_cols else 0,
        "sma_columns": sma_cols,
        "instruments": {
            r["instrument"]: {"bars": r["bars"], "volume": exact(r["volume"]),
                              "last_close": exact(r["last_close"])}
            for r in per_instrument.iter_rows(named=True)
        },
        "traders": latest_pnl["trader"].n_unique(),
        "realized_total": exact(latest_pnl["realized"].sum()) if latest_pnl.height else "0",
    }))


if __name__ == "__main__":
    main()
