"""Daily report: 1-minute bars with SMAs and per-trader P&L, recomputed from the earliest offset
(bounded: up to the end offsets seen at start) and written to Parquet under /reports/daily/<date>/.
Outputs also go to the `report.*` topics; a later day's run republishes only what is new there,
because the replay is deterministic and the jobs drop outputs already on the broker. The pods
run as the DAG's own Kafka user, `kappa-report`.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG
from kappa_common import CONFIG, DAG_SETTINGS, DEFAULT_ARGS, job_pod

DAG_ID = "kappa_daily_report"
#: Kafka user kappa_config.yaml assigns to this DAG (its ACLs: see k8s/users.yaml).
KAFKA_USER = CONFIG["kafka_users"][DAG_ID]

with DAG(
    dag_id=DAG_ID,
    description="Daily Parquet report of 1-minute bars/SMAs and P&L",
    schedule="@daily",
    **DAG_SETTINGS,
    dagrun_timeout=timedelta(hours=4),
    default_args={**DEFAULT_ARGS, "execution_timeout": timedelta(hours=2)},
    tags=["kappa", "report"],
) as dag:
    out = CONFIG["reports_mount"] + "/daily/{{ ds }}"
    common = ["--from-beginning", "--until-end", "--output-prefix", "report.", "--window", "1m", "--sma", "5,20"]
    bars = job_pod(
        "bars_report",
        "sma-calculator",
        ["--group", "report-bars-{{ ds_nodash }}", *common, "--parquet-dir", out + "/bars"],
        kafka_user=KAFKA_USER,
    )
    pnl = job_pod(
        "pnl_report",
        "profit-calculator",
        ["--group", "report-pnl-{{ ds_nodash }}", *common, "--parquet-dir", out + "/pnl"],
        kafka_user=KAFKA_USER,
    )
