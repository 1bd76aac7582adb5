"""Daily report: 1-minute bars with SMAs and per-trader P&L, recomputed from the earliest offset
(bounded: up to the end offsets seen at start) and written to Parquet under
/reports/daily/<date>/. Outputs also go to the `report.*` topics; a later day's run republishes
only what is new there, because the replay is deterministic and the jobs drop outputs already on
the broker. The pods run as the DAG's own Kafka user, `kappa-report`.

The report date <date> (YYYY-MM-DD, UTC) is, in order:
- the `date` param, when a run is triggered with one (e.g. `{"date": "2026-11-23"}` to redo that
  day's directory);
- else the run's logical date (`ds`): every scheduled run, and a manual run given one — the same
  directory as before this param existed;
- else the run's `run_after` date: a run triggered without a logical date (the REST API with
  `logical_date: null`, `airflow dags trigger` without `--logical-date`, TriggerDagRunOperator),
  for which `ds` is undefined. Airflow sets `run_after` on every run: for a manual run, the time
  it was triggered.
The consumer groups are per run (`report-bars-<run>`, `report-pnl-<run>`: the run id made safe),
so two runs for the same date never share one.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, Param
from kappa_common import CONFIG, DAG_SETTINGS, DEFAULT_ARGS, RUN_NAME, job_pod

DAG_ID = "kappa_daily_report"
#: Kafka user kappa_config.yaml assigns to this DAG (its ACLs: see k8s/users.yaml).
KAFKA_USER = CONFIG["kafka_users"][DAG_ID]
#: The report date (see above). `dag_run.logical_date` is None, not undefined, without one.
REPORT_DATE = "{{ params.date or (dag_run.logical_date or dag_run.run_after) | ds }}"

with DAG(
    dag_id=DAG_ID,
    description="Daily Parquet report of 1-minute bars/SMAs and P&L",
    schedule="@daily",
    **DAG_SETTINGS,
    dagrun_timeout=timedelta(hours=4),
    default_args={**DEFAULT_ARGS, "execution_timeout": timedelta(hours=2)},
    params={
        "date": Param(
            None,
            type=["null", "string"],
            pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$",
            description="Report date (YYYY-MM-DD); default: the logical date, else the trigger date",
        ),
    },
    tags=["kappa", "report"],
) as dag:
    out = CONFIG["reports_mount"] + "/daily/" + REPORT_DATE
    common = ["--from-beginning", "--until-end", "--output-prefix", "report.", "--window", "1m", "--sma", "5,20"]
    bars = job_pod(
        "bars_report",
        "sma-calculator",
        ["--group", "report-bars-" + RUN_NAME, *common, "--parquet-dir", out + "/bars"],
        kafka_user=KAFKA_USER,
    )
    pnl = job_pod(
        "pnl_report",
        "profit-calculator",
        ["--group", "report-pnl-" + RUN_NAME, *common, "--parquet-dir", out + "/pnl"],
        kafka_user=KAFKA_USER,
    )
