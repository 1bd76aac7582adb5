"""The DAG tasks as an Airflow 3.3 worker runs them, without a metadata database or API server.

A worker gets a task instance and its run's context (`TIRunContext`, with the DagRun: run id,
run type, logical date — None for a run triggered without one —, run_after, conf) from the API
server, builds a `RuntimeTaskInstance` of the task SDK and calls `ti.render_templates()` before
`execute`: that is what `render` does here, with the same classes (see
airflow.sdk.execution_time.task_runner.parse/startup). `pod` is then the pod KubernetesPodOperator
would create from the rendered task (`build_pod_request_obj`), in manifest form (camelCase)."""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

from airflow.models.dagrun import DagRun as DagRunModel
from airflow.sdk.api.datamodels._generated import DagRun, DagRunState, DagRunType, TIRunContext
from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance
from kubernetes.client import ApiClient


@dataclass(frozen=True)
class Run:
    """A DAG run as the API server describes it to the worker."""

    label: str
    run_type: DagRunType
    logical_date: datetime | None
    run_after: datetime
    #: None: the id Airflow generates for such a run (with a random suffix when there is no
    #: logical date); else the id a user gave (the REST API accepts `^[A-Za-z0-9_.~:+-]+$`).
    run_id: str | None = None
    conf: dict = field(default_factory=dict)

    def dag_run(self, dag_id: str) -> DagRun:
        run_id = self.run_id or DagRunModel.generate_run_id(
            run_type=self.run_type, logical_date=self.logical_date, run_after=self.run_after
        )
        return DagRun(
            dag_id=dag_id,
            run_id=run_id,
            logical_date=self.logical_date,
            # Airflow 3: logical date and data interval are both set or both None (a cron
            # schedule's interval is [logical date, logical date] by default).
            data_interval_start=self.logical_date,
            data_interval_end=self.logical_date,
            run_after=self.run_after,
            start_date=self.run_after,
            end_date=None,
            run_type=self.run_type,
            state=DagRunState.RUNNING,
            conf=self.conf,
            consumed_asset_events=[],
            partition_key=None,
        )


MIDNIGHT = datetime(2026, 11, 23, tzinfo=timezone.utc)
MORNING = datetime(2026, 11, 24, 9, 8, 7, 654321, tzinfo=timezone.utc)

#: The ways a Kappa DAG run starts: on schedule, by hand with and without a logical date.
RUNS = [
    Run("scheduled", DagRunType.SCHEDULED, MIDNIGHT, MIDNIGHT),
    Run("manual with a logical date", DagRunType.MANUAL, MORNING, MORNING),
    # The REST API with `"logical_date": null`, or `airflow dags trigger` without one.
    Run("manual without a logical date", DagRunType.MANUAL, None, MORNING),
    # TriggerDagRunOperator without logical_date: a manual-style id, run type operator_triggered.
    Run(
        "TriggerDagRunOperator without a logical date",
        DagRunType.OPERATOR_TRIGGERED,
        None,
        MORNING,
        run_id=DagRunModel.generate_run_id(run_type=DagRunType.MANUAL, logical_date=None, run_after=MORNING),
    ),
    # Run ids a user may give the REST API: every character it accepts, and a path traversal.
    Run("REST API with its own run id", DagRunType.MANUAL, None, MORNING, run_id="nightly.re-run:2~fix+1_a"),
    Run("REST API with run id '..'", DagRunType.MANUAL, None, MORNING, run_id=".."),
]
WITHOUT_LOGICAL_DATE = [r for r in RUNS if r.logical_date is None]


def runtime_ti(task, run: Run) -> RuntimeTaskInstance:
    """The worker's task instance of a copy of `task` in `run` (rendering changes the task)."""
    task = copy.deepcopy(task)
    dag_run = run.dag_run(task.dag_id)
    return RuntimeTaskInstance.model_construct(
        id=uuid.uuid4(),
        task_id=task.task_id,
        dag_id=task.dag_id,
        run_id=dag_run.run_id,
        try_number=1,
        dag_version_id=uuid.uuid4(),
        map_index=-1,
        task=task,
        bundle_instance=None,
        _ti_context_from_server=TIRunContext(dag_run=dag_run, max_tries=task.retries),
        max_tries=task.retries,
        start_date=run.run_after,
    )


def render(task, run: Run):
    """(rendered copy of `task`, template context) for `run`; raises what the worker would raise
    (jinja2's UndefinedError for an undefined variable: Airflow renders with StrictUndefined)."""
    ti = runtime_ti(task, run)
    ti.render_templates()
    return ti.task, ti.get_template_context()


def pod(task, run: Run) -> dict:
    """The pod KubernetesPodOperator creates for `task` in `run`, as a manifest (camelCase)."""
    rendered, context = render(task, run)
    return ApiClient().sanitize_for_serialization(rendered.build_pod_request_obj(context, dry_run=True))


def rendered_fields(task, run: Run) -> dict:
    """Every templated field of `task` rendered for `run`, as plain data (k8s objects as dicts)."""
    rendered, _ = render(task, run)
    return {f: ApiClient().sanitize_for_serialization(getattr(rendered, f)) for f in rendered.template_fields}
