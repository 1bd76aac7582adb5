"""Replay/backfill of the analytics (Kappa: recompute by replaying the log). Both analytics jobs
read `trades` from the earliest offset in a fresh consumer group up to the end offsets seen at
start (`--from-beginning --until-end`), publish to side topics (`--output-prefix`, default
`replay.`: the topics must exist, see k8s/topics.yaml) and write Parquet under
/reports/replay/<run>/, <run> being the run id made safe for paths and group ids (`safe_name`:
e.g. `manual__2026-11-24T09-08-07-654321-00-00_Ab3dEf9h-1c2d3e4f`), also the suffix of the run's
consumer groups `replay-bars-<run>` and `replay-pnl-<run>`. A run needs no logical date (the REST
API's `logical_date: null`, `airflow dags trigger`, TriggerDagRunOperator all work).
Triggered by hand, with parameters (e.g. another window or SMA set: then use a new prefix, such
as `replay.1m.`; prefixes start with `replay.`, the namespace of the DAG's Kafka user
`kappa-replay`). The pods run as that user.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, Param
from kappa_common import CONFIG, DAG_SETTINGS, DEFAULT_ARGS, RUN_NAME, job_pod

DAG_ID = "kappa_analytics_replay"
#: Kafka user kappa_config.yaml assigns to this DAG (its ACLs: see k8s/users.yaml).
KAFKA_USER = CONFIG["kafka_users"][DAG_ID]

with DAG(
    dag_id=DAG_ID,
    description="Recompute bars/SMAs and P&L from the earliest offset into side topics and Parquet",
    schedule=None,
    **DAG_SETTINGS,
    dagrun_timeout=timedelta(hours=6),
    default_args={**DEFAULT_ARGS, "execution_timeout": timedelta(hours=4)},
    params={
        # Under `replay.`: the namespace the DAG's Kafka user (kappa-replay) may write.
        "output_prefix": Param("replay.", type="string", pattern=r"^replay\.([a-z0-9_-]+\.)*$"),
        "window": Param("1s", type="string", pattern=r"^[0-9]+(ms|s|m|h)?$"),
        "sma": Param("5,20", type="string", pattern=r"^[0-9]+(,[0-9]+)*$"),
    },
    tags=["kappa", "replay"],
) as dag:
    out = CONFIG["reports_mount"] + "/replay/" + RUN_NAME
    common = [
        "--from-beginning",
        "--until-end",
        "--output-prefix",
        "{{ params.output_prefix }}",
        "--window",
        "{{ params.window }}",
        "--sma",
        "{{ params.sma }}",
    ]
    job_pod(
        "replay_bars",
        "sma-calculator",
        ["--group", "replay-bars-" + RUN_NAME, *common, "--parquet-dir", out + "/bars"],
        kafka_user=KAFKA_USER,
    )
    job_pod(
        "replay_pnl",
        "profit-calculator",
        ["--group", "replay-pnl-" + RUN_NAME, *common, "--parquet-dir", out + "/pnl"],
        kafka_user=KAFKA_USER,
    )
