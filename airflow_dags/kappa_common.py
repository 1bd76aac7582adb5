"""Shared building blocks of the Kappa Exchange DAGs: one KubernetesPodOperator factory, so every
batch pod runs the same image with the same Kafka settings, volumes, resources and security
context as the streaming Deployments in k8s/, under the Kafka user of its DAG (one KafkaUser per
DAG, `kafka_users` in kappa_config.yaml). Settings live in kappa_config.yaml.

Airflow is the batch side of the Kappa design only: streaming jobs are Deployments; these DAGs
start bounded pods (replay/backfill from the earliest offset to the end seen at start, reports,
load tests) that exit when done.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta
from pathlib import Path

import yaml
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from kubernetes.client import models as k8s

CONFIG = yaml.safe_load((Path(__file__).parent / "kappa_config.yaml").read_text())

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def safe_name(value: object) -> str:
    """`value` (a run id) as a name fit for a Kafka consumer group or transactional id and for one
    path component: only `[A-Za-z0-9_-]`, at most 109 characters.

    Run ids are not: Airflow's own contain ':' '+' and '.' (`manual__2026-11-24T09:08:07.654321+00:00`,
    with a random suffix when the run has no logical date) and a run id given to the REST API may
    be any `[A-Za-z0-9_.~:+-]+`, `..` included. Every other character becomes '-', and when that
    changed anything (or the name is long) a hash of the original is appended, so run ids that
    differ only in those characters still get distinct groups and directories."""
    raw = str(value)
    name = _UNSAFE.sub("-", raw)
    if name != raw or len(name) > 100:
        name = f"{name[:100]}-{hashlib.sha256(raw.encode()).hexdigest()[:8]}"
    return name


#: Template of a per-run name (consumer groups, output directories): the run id, made safe. Never
#: `ts_nodash`/`ds`: a run triggered without a logical date (the REST API with `logical_date: null`,
#: `airflow dags trigger` without one, TriggerDagRunOperator) has none, and they are undefined.
RUN_NAME = "{{ run_id | safe_name }}"

#: Settings every Kappa DAG shares: no backfill of missed intervals, one run at a time, and the
#: `safe_name` template filter.
DAG_SETTINGS = {
    "start_date": datetime(2026, 1, 1),
    "catchup": False,
    "max_active_runs": 1,
    "user_defined_filters": {"safe_name": safe_name},
}

#: Defaults of every task: bounded retries (the jobs are idempotent: a rerun republishes nothing
#: already on the broker), and no task without a timeout.
DEFAULT_ARGS = {
    "owner": "kappa-exchange",
    "retries": 2,
    "retry_delay": timedelta(minutes=5),
    "retry_exponential_backoff": True,
    "execution_timeout": timedelta(hours=2),
}


def job_pod(
    task_id: str,
    binary: str,
    arguments: list[str],
    *,
    kafka_user: str,
    env: dict[str, str] | None = None,
    **kwargs,
) -> KubernetesPodOperator:
    """A pod running one Kappa Exchange binary with `arguments` (templated) as Kafka user
    `kafka_user` (a KafkaUser of k8s/users.yaml: `KAFKA_SASL_USERNAME`, and `KAFKA_SASL_PASSWORD`
    from the Secret of the same name), with extra environment `env`."""
    if kafka_user not in CONFIG["kafka_users"].values():
        raise ValueError(f"{kafka_user!r} is not a DAG user of kappa_config.yaml (kafka_users)")
    res = CONFIG["resources"]
    return KubernetesPodOperator(
        task_id=task_id,
        name=task_id.replace("_", "-"),
        namespace=CONFIG["namespace"],
        image=CONFIG["image"],
        cmds=[binary],
        arguments=arguments,
        env_from=[k8s.V1EnvFromSource(config_map_ref=k8s.V1ConfigMapEnvSource(name=CONFIG["config_map"]))],
        env_vars=[
            k8s.V1EnvVar(name="KAFKA_SASL_USERNAME", value=kafka_user),
            k8s.V1EnvVar(
                name="KAFKA_SASL_PASSWORD",
                value_from=k8s.V1EnvVarSource(
                    secret_key_ref=k8s.V1SecretKeySelector(name=kafka_user, key="password")
                ),
            ),
            # Batch pods serve no probes.
            k8s.V1EnvVar(name="KAPPA_OPS_BIND", value=""),
            *(k8s.V1EnvVar(name=k, value=v) for k, v in (env or {}).items()),
        ],
        volumes=[
            k8s.V1Volume(
                name="kafka-ca",
                secret=k8s.V1SecretVolumeSource(
                    secret_name=CONFIG["kafka_ca_secret"], items=[k8s.V1KeyToPath(key="ca.crt", path="ca.crt")]
                ),
            ),
            k8s.V1Volume(
                name="reports",
                persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(claim_name=CONFIG["reports_claim"]),
            ),
            # The root filesystem is read-only: scratch space, as in the Deployments.
            k8s.V1Volume(name="tmp", empty_dir=k8s.V1EmptyDirVolumeSource()),
        ],
        volume_mounts=[
            k8s.V1VolumeMount(name="kafka-ca", mount_path="/etc/kafka-ca", read_only=True),
            k8s.V1VolumeMount(name="reports", mount_path=CONFIG["reports_mount"]),
            k8s.V1VolumeMount(name="tmp", mount_path="/tmp"),
        ],
        container_resources=k8s.V1ResourceRequirements(requests=res["requests"], limits=res["limits"]),
        # Pod Security "restricted", like the Deployments of k8s/: non-root (the image's user),
        # the runtime's default seccomp profile, no privilege escalation, no capabilities, and a
        # read-only root filesystem (the pods write only /tmp and the reports volume). fsGroup
        # lets that user write the reports volume where the volume plugin applies it.
        security_context=k8s.V1PodSecurityContext(
            run_as_non_root=True,
            run_as_user=10001,
            run_as_group=10001,
            fs_group=10001,
            fs_group_change_policy="OnRootMismatch",
            seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
        ),
        container_security_context=k8s.V1SecurityContext(
            allow_privilege_escalation=False,
            read_only_root_filesystem=True,
            capabilities=k8s.V1Capabilities(drop=["ALL"]),
        ),
        # No job talks to the Kubernetes API.
        automount_service_account_token=False,
        # part-of: selected by k8s/network-policies.yaml (DNS and Kafka egress; nothing else).
        # No app.kubernetes.io/name: a batch match maker must not count in the match-maker PDB.
        labels={"app.kubernetes.io/part-of": "kappa-exchange", "app.kubernetes.io/component": "batch"},
        get_logs=True,
        on_finish_action="delete_succeeded_pod",
        startup_timeout_seconds=600,
        **kwargs,
    )
