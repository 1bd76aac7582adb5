"""Load test on the load test's own topics: the order generator publishes a seeded,
rate-controlled flow to `loadtest.orders`, and, in parallel, a match maker of its own reads
`loadtest.orders` and publishes to `loadtest.trades`, `loadtest.order-events`, `loadtest.book`
and `loadtest.rejects` (snapshots to `loadtest.match-maker-snapshots`, consumer group
`loadtest.match-maker`), then exits 2 minutes after the flow stops (`--idle-exit-ms`). Watch its
log and the topics' lag for throughput and latency.

Both pods run with `KAFKA_TOPIC_PREFIX=loadtest.`, which prefixes every topic, consumer group and
transactional id they use, and as Kafka user `kappa-load-test`, whose ACLs (k8s/users.yaml) cover
the `loadtest.` prefix only. The production `orders` topic (the exchange's source of truth, kept
forever) is never written, and the live Deployments never see the flow. The `loadtest.*` topics
are in k8s/topics.yaml.

Triggered by hand with the size, rate and seed as parameters.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, Param
from kappa_common import CONFIG, DAG_SETTINGS, DEFAULT_ARGS, job_pod

DAG_ID = "kappa_load_test"
#: Kafka user kappa_config.yaml assigns to this DAG (its ACLs: see k8s/users.yaml).
KAFKA_USER = CONFIG["kafka_users"][DAG_ID]
#: The namespace of every topic, group and transactional id of the load test.
TOPIC_PREFIX = "loadtest."

with DAG(
    dag_id=DAG_ID,
    description="Publish a seeded order flow at a fixed rate to loadtest.orders and match it",
    schedule=None,
    **DAG_SETTINGS,
    dagrun_timeout=timedelta(hours=2),
    # A load test is not retried: a second run would double the load.
    default_args={**DEFAULT_ARGS, "retries": 0, "execution_timeout": timedelta(hours=1)},
    params={
        "count": Param(1_000_000, type="integer", minimum=1),
        "rate": Param(20_000, type="integer", minimum=0),
        "seed": Param(42, type="integer", minimum=0),
        "instruments": Param(7, type="integer", minimum=1),
        "traders": Param(200, type="integer", minimum=1),
    },
    tags=["kappa", "load-test"],
) as dag:
    env = {"KAFKA_TOPIC_PREFIX": TOPIC_PREFIX}
    job_pod(
        "generate_orders",
        "order-generator",
        [
            "--count",
            "{{ params.count }}",
            "--rate",
            "{{ params.rate }}",
            "--seed",
            "{{ params.seed }}",
            "--instruments",
            "{{ params.instruments }}",
            "--traders",
            "{{ params.traders }}",
        ],
        kafka_user=KAFKA_USER,
        env=env,
    )
    # In parallel (no dependency): it matches the flow as it arrives and exits once caught up and
    # idle for 2 minutes — counted from its start too, so the generator must start publishing
    # within 2 minutes of it. No KAPPA_TRANSACTIONAL_ID: the default id (group, pod name, pid) is
    # under the prefix like its group, so it never fences a live match maker.
    job_pod(
        "match_orders",
        "match-maker",
        ["--idle-exit-ms", "120000"],
        kafka_user=KAFKA_USER,
        env=env,
    )
