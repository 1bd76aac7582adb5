"""Load test: the order generator publishes a seeded, rate-controlled flow to `orders` (the live
match maker and analytics Deployments process it; watch their /metrics for lag and latency).
Triggered by hand with the size, rate and seed as parameters.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, Param
from kappa_common import DAG_SETTINGS, DEFAULT_ARGS, job_pod

with DAG(
    dag_id="kappa_load_test",
    description="Publish a seeded order flow at a fixed rate",
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
    )
