"""Test settings for the deployment checks: Airflow must be configured before it is imported."""

import os
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="kappa-airflow-"))
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "airflow_dags")

# Airflow puts the DAGs folder on sys.path (the DAG processor does at start), which is how the
# DAG files import kappa_common; a bare DagBag does not, so do it here.
import sys  # noqa: E402

sys.path.insert(0, str(ROOT / "airflow_dags"))

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def dagbag():
    """Every DAG of airflow_dags/, parsed once."""
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "airflow_dags"))
