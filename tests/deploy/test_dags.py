"""The Airflow DAGs import cleanly, have the expected tasks and settings, run the project's image,
and every command line parses with the real job binary."""

from datetime import timedelta

import pytest
import yaml
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from conftest import ROOT
from jobs import check_command, check_env
from pods import pod_env
from rendering import RUNS, rendered_fields

EXPECTED = {
    "kappa_analytics_replay": {"replay_bars": "sma-calculator", "replay_pnl": "profit-calculator"},
    "kappa_daily_report": {"bars_report": "sma-calculator", "pnl_report": "profit-calculator"},
    "kappa_load_test": {"generate_orders": "order-generator", "match_orders": "match-maker"},
}


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == set(EXPECTED)


@pytest.mark.parametrize("dag_id", sorted(EXPECTED))
def test_dag_settings_and_tasks(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    assert dag.max_active_runs == 1
    assert dag.catchup is False
    assert dag.dagrun_timeout is not None
    assert {t.task_id for t in dag.tasks} == set(EXPECTED[dag_id])
    image = yaml.safe_load((ROOT / "airflow_dags" / "kappa_config.yaml").read_text())["image"]
    kustomize = yaml.safe_load((ROOT / "k8s" / "kustomization.yaml").read_text())["images"][0]
    assert image == f"{kustomize['newName']}:{kustomize['newTag']}", "DAGs and k8s must run the same image"
    for task in dag.tasks:
        assert isinstance(task, KubernetesPodOperator)
        assert task.image == image
        assert task.execution_timeout is not None and task.execution_timeout <= timedelta(hours=4)
        assert task.cmds == [EXPECTED[dag_id][task.task_id]]
        assert task.on_finish_action.value == "delete_succeeded_pod"
    if dag_id != "kappa_load_test":
        assert all(t.retries >= 1 for t in dag.tasks)


@pytest.mark.parametrize("dag_id", sorted(EXPECTED))
@pytest.mark.parametrize("run", [RUNS[0], RUNS[2]], ids=lambda r: r.label)
def test_command_lines_parse_with_the_real_binaries(dagbag, dag_id, run):
    """The command lines as Airflow renders them, for a run with and one without a logical date."""
    dag = dagbag.dags[dag_id]
    for task in dag.tasks:
        args = rendered_fields(task, run)["arguments"]
        assert not any("{{" in a for a in args), args
        check_command(task.cmds[0], args)
        # Batch pods blank KAPPA_OPS_BIND whether or not the binary serves ops endpoints.
        check_env(task.cmds[0], set(pod_env(task)) - {"KAPPA_OPS_BIND"})


def test_replays_read_from_the_beginning_into_fresh_groups(dagbag):
    for dag_id in ("kappa_analytics_replay", "kappa_daily_report"):
        for task in dagbag.dags[dag_id].tasks:
            args = task.arguments
            assert "--from-beginning" in args and "--until-end" in args
            group = args[args.index("--group") + 1]
            assert "{{" in group, f"{task.task_id}: the group must be per run, not {group!r}"
            assert "--output-prefix" in args, "batch runs must not write into the live topics"


def test_a_wrong_flag_is_caught_by_the_command_check():
    with pytest.raises(AssertionError):
        check_command("sma-calculator", ["--windw", "1s"])
    with pytest.raises(AssertionError):
        check_command("sma-calculator", ["--window", "soon"])
