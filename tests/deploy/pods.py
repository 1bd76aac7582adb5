"""The pods of the Airflow DAGs' tasks (KubernetesPodOperator), in the manifests' form, so the
same checks apply to them and to the Deployments of k8s/."""

from kubernetes.client import ApiClient


def pod_env(task) -> dict:
    """A task's pod environment by name, as manifest entries (name, value / valueFrom)."""
    return {e["name"]: e for e in ApiClient().sanitize_for_serialization(task.env_vars or [])}


def pod_labels(task) -> dict:
    """The labels a task's pod gets from the DAG (Airflow adds its own dag_id, task_id... ones)."""
    return dict(task.labels or {})
