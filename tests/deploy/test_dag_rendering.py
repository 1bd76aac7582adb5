"""Every templated field of every DAG task renders, with Airflow 3.3's own rendering, for every
way a run starts — scheduled, and by hand with or without a logical date (without one, `ds`,
`ts_nodash`, `logical_date` and `data_interval_*` are undefined) — into valid names: consumer
groups of Kafka's legal characters, output paths of plain components under the reports volume."""

import posixpath
import re
from datetime import date

import pytest
import yaml
from conftest import ROOT
from rendering import RUNS, WITHOUT_LOGICAL_DATE, Run, render, rendered_fields

CONFIG = yaml.safe_load((ROOT / "airflow_dags" / "kappa_config.yaml").read_text())
#: Kafka's legal characters for topic names (Topic.validate), used for groups too, and its limit.
KAFKA_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
PATH_COMPONENT = re.compile(r"^[A-Za-z0-9._-]{1,255}$")
#: The ACL prefixes of the DAGs' groups (k8s/users.yaml, src/access.rs).
GROUP_PREFIXES = {"kappa_analytics_replay": "replay-", "kappa_daily_report": "report-"}


def tasks(dagbag):
    return [(dag_id, t) for dag_id, dag in sorted(dagbag.dags.items()) for t in dag.tasks]


def strings(value):
    """Every string inside rendered data."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from strings(v)


def arg(args, flag):
    return args[args.index(flag) + 1] if flag in args else None


def check_path(path, where):
    assert path == posixpath.normpath(path) and path.startswith(CONFIG["reports_mount"] + "/"), (where, path)
    for part in path.split("/")[1:]:
        assert PATH_COMPONENT.match(part) and part not in {".", ".."}, (where, path, part)


@pytest.mark.parametrize("run", RUNS, ids=lambda r: r.label)
def test_every_templated_field_renders_to_valid_names(dagbag, run):
    for dag_id, task in tasks(dagbag):
        where = f"{dag_id}.{task.task_id} ({run.label})"
        fields = rendered_fields(task, run)  # raises UndefinedError on an undefined variable
        left = [s for s in strings(fields) if "{{" in s or "{%" in s]
        assert not left, f"{where}: unrendered {left}"
        args = fields["arguments"]
        group = arg(args, "--group")
        if dag_id in GROUP_PREFIXES:
            assert group and group.startswith(GROUP_PREFIXES[dag_id]), (where, group)
        if group is not None:
            assert KAFKA_NAME.match(group), f"{where}: group {group!r}"
        parquet = arg(args, "--parquet-dir")
        if parquet is not None:
            check_path(parquet, where)


@pytest.mark.parametrize("dag_id", sorted(GROUP_PREFIXES))
def test_each_run_gets_its_own_groups_and_directories(dagbag, dag_id):
    """Two runs never share a consumer group (a fresh group replays from the beginning), nor a
    replay's output directory; run ids that differ only in characters made safe stay apart."""
    dag = dagbag.dags[dag_id]
    runs = [
        *RUNS,
        Run("own id with ':'", RUNS[2].run_type, None, RUNS[2].run_after, run_id="a:b"),
        Run("own id with '+'", RUNS[2].run_type, None, RUNS[2].run_after, run_id="a+b"),
        Run("own id a-b", RUNS[2].run_type, None, RUNS[2].run_after, run_id="a-b"),
    ]
    for task in dag.tasks:
        seen = {}
        for run in runs:
            args = rendered_fields(task, run)["arguments"]
            key = arg(args, "--group")
            assert key not in seen, f"{task.task_id}: {run.label} and {seen[key]} share group {key}"
            seen[key] = run.label
        if dag_id == "kappa_analytics_replay":
            dirs = {arg(rendered_fields(task, run)["arguments"], "--parquet-dir") for run in runs}
            assert len(dirs) == len(runs), dirs


def test_the_daily_report_date(dagbag):
    """The `date` param, else the logical date (`ds`, as scheduled runs always had), else the date
    the run was triggered (run_after)."""
    dag = dagbag.dags["kappa_daily_report"]
    cases = [
        (RUNS[0], RUNS[0].logical_date.date()),
        (RUNS[1], RUNS[1].logical_date.date()),
        *((r, r.run_after.date()) for r in WITHOUT_LOGICAL_DATE),
        (Run("date param", RUNS[2].run_type, None, RUNS[2].run_after, conf={"date": "2026-11-20"}), date(2026, 11, 20)),
        (Run("date param", RUNS[0].run_type, RUNS[0].logical_date, RUNS[0].run_after, conf={"date": "2026-11-20"}), date(2026, 11, 20)),
    ]
    for task in dag.tasks:
        for run, day in cases:
            parquet = arg(rendered_fields(task, run)["arguments"], "--parquet-dir")
            assert parquet.split("/")[-2] == day.isoformat(), (task.task_id, run.label, parquet)
    with pytest.raises(Exception, match="does not match"):
        render(dag.tasks[0], Run("bad date", RUNS[2].run_type, None, RUNS[2].run_after, conf={"date": "2026-11-2"}))


def test_names_are_made_safe():
    from kappa_common import safe_name

    assert safe_name("scheduled__2026-11-23T00:00:00+00:00").startswith("scheduled__2026-11-23T00-00-00-00-00-")
    assert safe_name("plain-id_1") == "plain-id_1"
    for raw in ("..", ".", "a/b", "x" * 250, "manual__2026-11-24T09:08:07.654321+00:00_Ab3dEf9h"):
        name = safe_name(raw)
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,109}", name), (raw, name)
    assert len({safe_name(r) for r in ("a:b", "a+b", "a-b", "a.b", "a~b")}) == 5
