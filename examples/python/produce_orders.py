#!/usr/bin/env python3
"""Place orders on Kappa Exchange straight into Kafka with the standard Python client.

Each instrument is matched on one partition of `orders`: its position in the instrument table
(data/instruments.toml) modulo the topic's partition count. Kafka's partitioners cannot know the
table (confluent-kafka's default is not even Java's murmur2), so name the partition on every
produce call. An order sent elsewhere is refused by the match maker as `wrong_partition`.

    pip install confluent-kafka==2.12.1
    python3 examples/python/produce_orders.py --brokers 127.0.0.1:9092 --count 100
    KAFKA_SASL_USERNAME=kappa-order-generator KAFKA_SASL_PASSWORD=... \
      python3 examples/python/produce_orders.py --brokers kafka:9093 \
      -X security.protocol=SASL_SSL -X sasl.mechanism=SCRAM-SHA-512 -X ssl.ca.location=ca.crt

Prints one JSON line per run: {"delivered": N, "failed": M, "partitions": {...}}.
"""

import argparse
import json
import os
import random
import sys
import tomllib

from confluent_kafka import Producer


def instrument_table(path):
    """Symbols in table order: the order defines each instrument's partition."""
    with open(path, "rb") as f:
        return [i["symbol"] for i in tomllib.load(f)["instrument"]]


def kafka_config(settings):
    """-X KEY=VALUE settings, plus the SASL credential from the environment (as the jobs read it:
    on the Strimzi cluster each client is a KafkaUser with only its ACLs)."""
    config = dict(kv.split("=", 1) for kv in settings)
    if os.environ.get("KAFKA_SASL_USERNAME"):
        config["sasl.username"] = os.environ["KAFKA_SASL_USERNAME"]
        config["sasl.password"] = os.environ.get("KAFKA_SASL_PASSWORD", "")
    return config


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--topic", default=os.environ.get("KAFKA_TOPIC_PREFIX", "") + "orders")
    ap.add_argument("--instruments", default=os.path.join(here, "..", "..", "data", "instruments.toml"))
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--first-id", type=int, default=None,
                    help="first order id (default: random, below 2^52)")
    ap.add_argument("--trader-prefix", default="PY")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--default-partitioner", action="store_true",
                    help="leave the partition to the client (WRONG: shows the wrong_partition refusal)")
    ap.add_argument("-X", action="append", default=[], metavar="KEY=VALUE",
                    help="librdkafka setting, as the jobs take them: e.g. -X security.protocol="
                         "SASL_SSL -X sasl.mechanism=SCRAM-SHA-512 (the user's credential from "
                         "KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD)")
    args = ap.parse_args()

    symbols = instrument_table(args.instruments)
    producer = Producer({"bootstrap.servers": args.brokers, "enable.idempotence": True,
                         "acks": "all", **kafka_config(args.X)})
    meta = producer.list_topics(args.topic, timeout=10)
    topic = meta.topics.get(args.topic)
    if topic is None or topic.error is not None or not topic.partitions:
        sys.exit(f"topic {args.topic} is not available: {topic.error if topic else 'missing'}")
    partitions = len(topic.partitions)

    rng = random.Random(args.seed)
    first = args.first_id if args.first_id is not None else rng.randrange(1 << 40, 1 << 51)
    delivered, failed, used = 0, [], {}

    def on_delivery(err, msg):
        nonlocal delivered
        if err is not None:
            failed.append(str(err))
        else:
            delivered += 1

    for n in range(args.count):
        index = n % len(symbols)
        symbol = symbols[index]
        order = {
            "id": first + n,
            "instrument": symbol,
            "trxn_type": "BUY" if (n // len(symbols)) % 2 == 0 else "SELL",
            "quantity": rng.randint(1, 5),
            "price": 100.0,  # buys and sells meet: every instrument trades
            "trader": f"{args.trader_prefix}{n % 3}",
        }
        payload = json.dumps(order).encode()
        if args.default_partitioner:
            producer.produce(args.topic, payload, key=symbol, on_delivery=on_delivery)
        else:
            partition = index % partitions  # the instrument's partition
            used[symbol] = partition
            producer.produce(args.topic, payload, key=symbol, partition=partition,
                             on_delivery=on_delivery)
        producer.poll(0)
    producer.flush(30)
    print(json.dumps({"delivered": delivered, "failed": len(failed), "partitions": used}))
    if failed:
        sys.exit(f"{len(failed)} orders not delivered, first: {failed[0]}")


if __name__ == "__main__":
    main()
