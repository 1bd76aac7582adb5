"""Monitoring (k8s/monitoring/): the alert rules checked and unit-tested by promtool (Debian's
prometheus package, installed by scripts/setup.sh), the Grafana dashboard's structure and queries,
every metric and label a rule or a panel reads checked against what the code exports, and the
PodMonitor against the Deployments and the network policy it depends on."""

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import ROOT
from manifests import MONITORING, MONITORING_DOCS, container, of_kind

RULES = MONITORING / "prometheus-rules.yaml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
RULE_TESTS = Path(__file__).with_name("prometheus-rules.test.yaml")
README = ROOT / "k8s" / "README.md"
SOURCES = {p: p.read_text() for p in sorted((ROOT / "src").rglob("*.rs"))}

#: The metric families the jobs serve on /metrics, with their type and labels besides `job`:
#: src/runtime/metrics.rs (match-maker, sma-calculator, profit-calculator), src/serving/api.rs
#: (market-view) and src/fix/server.rs (fix-gateway). test_the_metric_list_is_the_codes keeps it
#: in step with the code.
KAPPA = {
    "kappa_messages_consumed_total": ("counter", {"topic"}),  # topic: market-view's only
    "kappa_messages_replayed_total": ("counter", set()),
    "kappa_messages_produced_total": ("counter", set()),
    "kappa_rejects_total": ("counter", {"reason"}),  # reason: the code on the rejects topic
    "kappa_outputs_suppressed_total": ("counter", set()),
    "kappa_items_total": ("counter", set()),
    "kappa_state_updates_total": ("counter", set()),
    "kappa_snapshots_total": ("counter", set()),
    "kappa_snapshot_bytes_total": ("counter", set()),
    "kappa_snapshot_state_bytes_total": ("counter", set()),
    "kappa_snapshot_micros_total": ("counter", set()),
    "kappa_transactions_committed_total": ("counter", set()),
    "kappa_transactions_aborted_total": ("counter", set()),
    "kappa_assigned_partitions": ("gauge", set()),
    "kappa_ready": ("gauge", set()),
    "kappa_last_poll_age_seconds": ("gauge", set()),
    "kappa_consumer_lag": ("gauge", {"topic", "partition"}),
    "kappa_recovery_remaining_messages": ("gauge", {"partition"}),
    "kappa_batch_processing_seconds": ("histogram", set()),
    "kappa_commit_seconds": ("histogram", set()),
    "kappa_undecodable_total": ("counter", set()),
    "kappa_api_orders_total": ("counter", {"outcome"}),
    "kappa_api_streams_open": ("gauge", set()),
    "kappa_api_streams_refused_total": ("counter", {"scope"}),
    "kappa_api_refused_total": ("counter", {"reason"}),
    "kappa_api_credentials": ("gauge", set()),
    "kappa_fix_sessions": ("gauge", set()),
    "kappa_fix_logons_total": ("counter", set()),
    "kappa_fix_logons_refused_total": ("counter", set()),
    "kappa_fix_messages_in_total": ("counter", set()),
    "kappa_fix_garbled_total": ("counter", set()),
    "kappa_fix_session_rejects_total": ("counter", set()),
    "kappa_fix_orders_published_total": ("counter", set()),
    "kappa_fix_orders_refused_total": ("counter", set()),
    "kappa_fix_execution_reports_total": ("counter", set()),
    "kappa_fix_cancel_rejects_total": ("counter", set()),
    "kappa_fix_resend_requests_total": ("counter", set()),
    "kappa_fix_messages_resent_total": ("counter", set()),
    "kappa_fix_order_events_read_total": ("counter", set()),
}
#: Labels of every scraped sample: `job` (the job's own, = the PodMonitor's jobLabel) and what the
#: Prometheus Operator adds from the pod.
TARGET = {"job", "instance", "namespace", "pod", "container", "endpoint"}
#: Series from elsewhere that the rules and the dashboard may read (k8s/README.md, "Monitoring").
EXTERNAL = {
    "up": TARGET,  # Prometheus, per target
    "ALERTS": {"alertname", "alertstate", "severity"},  # Prometheus, per alert
    "container_memory_working_set_bytes": {"namespace", "pod", "container", "id", "image", "name"},  # cAdvisor
    "kube_pod_container_resource_limits": {"namespace", "pod", "container", "node", "resource", "unit", "uid"},  # kube-state-metrics
}


def exported():
    """Series name -> labels, for every series the jobs serve."""
    out = {}
    for name, (kind, labels) in KAPPA.items():
        labels = labels | TARGET
        if kind == "histogram":
            out |= {name + "_bucket": labels | {"le"}, name + "_sum": labels, name + "_count": labels}
        else:
            out[name] = labels
    return out


def known():
    """What a query may read: the jobs' series, the external ones, and the recording rules."""
    out = exported() | EXTERNAL
    for rule in rules():
        if "record" in rule:
            out[rule["record"]] = parse(rule["expr"])["by"]
    return out


# --- PromQL, as far as these checks need it: the selectors (metric, matchers) and grouping labels.

TOKEN = re.compile(
    r"""(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
      | (?P<number>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?(?:(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*)?)
      | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
      | (?P<op>=~|!~|!=|==|<=|>=|[-+*/%^<>=(){}\[\],@:])
      | (?P<space>\s+)""",
    re.X,
)
AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile"}
#: Label lists: of an aggregation (the labels its result keeps), of a vector matching.
BY = {"by", "without"}
MATCHING = {"on", "ignoring", "group_left", "group_right"}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def tokens(expr):
    out, pos = [], 0
    while pos < len(expr):
        m = TOKEN.match(expr, pos)
        assert m, f"cannot read {expr[pos:pos + 20]!r} in {expr!r}"
        if m.lastgroup != "space":
            out.append((m.lastgroup, m.group()))
        pos = m.end()
    return out


def parse(expr):
    """{"selectors": [(metric, {label: (op, value)})], "by": labels of by/without clauses, "matching":
    labels of on/ignoring/group_left/group_right clauses}."""
    toks = tokens(expr) + [("end", "")]
    selectors, by, matching, i = [], set(), set(), 0
    while toks[i][0] != "end":
        kind, text = toks[i]
        nxt = toks[i + 1][1]
        if text == "[":  # a range or subquery: durations only
            while toks[i][1] != "]":
                i += 1
            i += 1
        elif kind == "ident" and text in BY | MATCHING:
            labels = by if text in BY else matching
            i += 1
            if toks[i][1] == "(":
                while toks[i][1] != ")":
                    if toks[i][0] == "ident":
                        labels.add(toks[i][1])
                    i += 1
                i += 1
        elif kind == "ident" and (nxt == "(" or text in AGGREGATIONS):  # a function or an aggregation
            i += 1
        elif kind == "ident" and text.lower() in KEYWORDS:
            i += 1
        elif kind == "ident" or text == "{":
            name = text if kind == "ident" else None
            i += kind == "ident"
            matchers = {}
            if toks[i][1] == "{":
                i += 1
                while toks[i][1] != "}":
                    (_, label), (_, op), (vkind, value) = toks[i : i + 3]
                    assert vkind == "string", expr
                    matchers[label] = (op, value[1:-1])
                    i += 3
                    i += toks[i][1] == ","
                i += 1
            selectors.append((name, matchers))
        else:
            i += 1
    return {"selectors": selectors, "by": by, "matching": matching}


def problems(expr, names, outputs=()):
    """What is wrong with `expr` against `names` (series -> labels): unknown metrics, labels a
    metric does not have, label values the code never writes, grouping or matching on labels no
    series of the query has, printing (`outputs`: legend or annotation labels) labels the result
    has not (the aggregations' labels where there are aggregations)."""
    q = parse(expr)
    out, available = [], set()
    for name, matchers in q["selectors"]:
        if name not in names:
            out.append(f"unknown metric {name}")
            continue
        available |= names[name]
        for label, (op, value) in matchers.items():
            if label not in names[name]:
                out.append(f"{name} has no label {label}")
            elif name in exported() and label not in TARGET | {"le"} and op in ("=", "!="):
                if f'"{value}"' not in "".join(SOURCES.values()):
                    out.append(f'{name}: the code never writes {label}="{value}"')
    out += [f"no series has label {label}" for label in sorted((q["by"] | q["matching"]) - available)]
    shown = q["by"] or available
    out += [f"shows label {label} that the result has not" for label in sorted(set(outputs) - shown)]
    return out


# --- The rules, and promtool on them.


def rule_doc():
    (doc,) = [d for name, d in MONITORING_DOCS if name == "monitoring/prometheus-rules.yaml"]
    return doc


def rules():
    return [r for g in rule_doc()["spec"]["groups"] for r in g["rules"]]


def alerts():
    return [r for r in rules() if "alert" in r]


@pytest.fixture(scope="module")
def promtool():
    exe = shutil.which("promtool")
    assert exe, "promtool is missing: run scripts/setup.sh (Debian package prometheus)"
    return exe


def write_rules(folder: Path, groups) -> Path:
    path = folder / "kappa-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


def test_the_rules_pass_promtool_check(promtool, tmp_path):
    path = write_rules(tmp_path, rule_doc()["spec"]["groups"])
    run = subprocess.run([promtool, "check", "rules", path], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"SUCCESS: {len(rules())} rules found" in run.stdout, run.stdout


def test_the_alerts_fire_and_stay_quiet_as_their_unit_tests_say(promtool, tmp_path):
    write_rules(tmp_path, rule_doc()["spec"]["groups"])
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    run = subprocess.run(
        [promtool, "test", "rules", RULE_TESTS.name], cwd=tmp_path, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout, run.stdout


def test_the_unit_tests_fail_when_an_alert_misbehaves(promtool, tmp_path):
    """The unit tests are real: with a threshold loosened, promtool reports the alert that fires
    where it must not."""
    groups = copy.deepcopy(rule_doc()["spec"]["groups"])
    for g in groups:
        for r in g["rules"]:
            if r.get("alert") == "KappaRejectRateHigh":
                r["expr"] = r["expr"].replace("> 0.05", "> 0.005")
    write_rules(tmp_path, groups)
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    run = subprocess.run(
        [promtool, "test", "rules", RULE_TESTS.name], cwd=tmp_path, capture_output=True, text=True
    )
    assert run.returncode != 0 and "KappaRejectRateHigh" in run.stdout + run.stderr, run.stdout


def test_every_alert_is_unit_tested_firing_and_quiet():
    cases = yaml.safe_load(RULE_TESTS.read_text())
    assert cases["rule_files"] == ["kappa-rules.yaml"]
    fires, quiet = set(), set()
    for test in cases["tests"]:
        for t in test["alert_rule_test"]:
            (fires if t["exp_alerts"] else quiet).add(t["alertname"])
    names = {a["alert"] for a in alerts()}
    assert fires == names, names ^ fires
    assert quiet == names, names ^ quiet


def test_every_alert_has_a_duration_severity_summary_description_and_runbook():
    text = README.read_text()
    start = text.index("\n## Monitoring")
    end = text.find("\n## ", start + 1)
    monitoring = text[start : end if end != -1 else None]
    for a in alerts():
        name = a["alert"]
        assert re.fullmatch(r"Kappa[A-Z]\w+", name), name
        assert re.fullmatch(r"\d+m", a["for"]), name
        assert a["labels"]["severity"] in {"critical", "warning"}, name
        assert set(a["annotations"]) == {"summary", "description"}, name
        # The runbook: "**KappaX** (severity, for)" in k8s/README.md's Monitoring section.
        assert f"**{name}** ({a['labels']['severity']}" in monitoring, f"no runbook for {name} in k8s/README.md"
    documented = set(re.findall(r"\*\*(Kappa[A-Za-z0-9]+)\*\*", monitoring))
    assert documented == {a["alert"] for a in alerts()}


# --- Metrics: the code's, and what the rules and the dashboard read.


def test_the_metric_list_is_the_codes():
    """KAPPA names exactly the `kappa_…` string literals of src/ (every family the code renders),
    with the type the code gives where it writes one beside the name, and only label names the
    code writes."""
    text = "".join(SOURCES.values())
    assert set(re.findall(r'"(kappa_[a-z0-9_]+)', text)) == set(KAPPA)
    typed = re.findall(r'"(kappa_[a-z0-9_]+)",\s*"(counter|gauge|histogram)"', text)
    assert typed, "no `name, kind` pairs found in the code"
    for name, kind in typed:
        assert KAPPA[name][0] == kind, name
    histograms = {n for n, (k, _) in KAPPA.items() if k == "histogram"}
    metrics_rs = SOURCES[ROOT / "src" / "runtime" / "metrics.rs"]
    assert "# TYPE {name} histogram" in metrics_rs and all(f'"{n}"' in metrics_rs for n in histograms)
    written = set(re.findall(r'label\("(\w+)"', text)) | set(re.findall(r',(\w+)=\\"', text))
    assert set().union(*(labels for _, labels in KAPPA.values())) <= written


def test_rules_read_only_exported_metrics():
    names = known()
    for r in rules():
        shown = re.findall(r"\$labels\.(\w+)", json.dumps(r.get("annotations", {})))
        assert not problems(r["expr"], names, shown), (r.get("alert") or r.get("record"), problems(r["expr"], names, shown))


def dashboard():
    return json.loads(DASHBOARD.read_text())


def grafana_to_promql(expr):
    """A panel's query with Grafana's variables filled: intervals with a duration, the template
    variables (only ever in regex matchers) with a regex."""
    for var, value in {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}.items():
        expr = expr.replace(var, value)
    return re.sub(r"\$\{?\w+\}?", ".+", expr)


def targets():
    """(panel title, refId, PromQL, legend) of every panel query and template variable query."""
    out = []
    for p in dashboard()["panels"]:
        for t in p.get("targets", []):
            legend = re.findall(r"\{\{\s*(\w+)\s*\}\}", t.get("legendFormat", ""))
            out.append((p["title"], t["refId"], grafana_to_promql(t["expr"]), legend))
    for v in dashboard()["templating"]["list"]:
        if v["type"] == "query":
            m = re.fullmatch(r"label_values\((.+), (\w+)\)", v["query"]["query"])
            assert m, v["name"]
            out.append((f"${v['name']}", "query", grafana_to_promql(m.group(1)), [m.group(2)]))
    return out


def test_dashboard_reads_only_exported_metrics():
    names = known()
    for title, ref, expr, legend in targets():
        assert not problems(expr, names, legend), (title, ref, problems(expr, names, legend))


def test_the_metric_check_catches_what_the_code_does_not_export():
    names = known()
    assert problems('rate(kappa_batch_seconds_count{job="x"}[5m])', names) == ["unknown metric kappa_batch_seconds_count"]
    assert problems("sum by (job, reason) (rate(kappa_items_total[5m]))", names) == ["no series has label reason"]
    assert problems('kappa_api_orders_total{outcome="lost"}', names) == [
        'kappa_api_orders_total: the code never writes outcome="lost"'
    ]
    assert problems("kappa_consumer_lag{parition='1'}", names) == ["kappa_consumer_lag has no label parition"]
    assert problems("sum by (job) (kappa_consumer_lag)", names, ["topic"]) == ["shows label topic that the result has not"]
    assert not problems('max by (job, topic, partition) (kappa_consumer_lag{job=~".+"}) > 5', names, ["topic"])


# --- The dashboard.


def test_dashboard_structure():
    d = dashboard()
    assert d["uid"] and d["title"] and d["schemaVersion"] >= 36
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    cells = {}
    for p in d["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = p["title"]
        if p["type"] == "row":
            assert not p.get("targets") and not p["panels"], p["title"]
            continue
        assert p["type"] in {"timeseries", "stat"}, p["title"]
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"] and p["description"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert t["datasource"] == p["datasource"] and t["expr"].strip(), (p["title"], t["refId"])
            # Template variables only in regex matchers, where a multi-value selection works.
            for var in re.findall(r'(\w+)(=~|!~|=|!=)"\$', t["expr"]):
                assert var[1] == "=~", (p["title"], t["refId"], var)
    # Every panel sits in a row: rows first, then their panels below them.
    assert d["panels"][0]["type"] == "row"


def test_dashboard_queries_parse_with_promtool(promtool, tmp_path):
    """Each panel query, variables filled, as a recording rule: promtool parses it for real."""
    records = [
        {"record": f"dashboard:query_{i}:check", "expr": expr} for i, (_, _, expr, _) in enumerate(targets())
    ]
    path = write_rules(tmp_path, [{"name": "dashboard", "rules": records}])
    run = subprocess.run([promtool, "check", "rules", path], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_dashboard_covers_the_operations_metrics():
    """Throughput, lag, batch and commit latency quantiles, rejects and refusals by reason,
    recovery, readiness, memory against the limit, market-view's streams and API."""
    exprs = " ".join(expr for _, _, expr, _ in targets())
    for series in [
        "kappa_messages_consumed_total",
        "kappa_items_total",
        "kappa_consumer_lag",
        "kappa_recovery_remaining_messages",
        "kappa_ready",
        "kappa_rejects_total",
        "kappa_api_refused_total",
        "kappa_api_orders_total",
        "kappa_api_streams_open",
        "container_memory_working_set_bytes",
        "kube_pod_container_resource_limits",
    ]:
        assert re.search(rf"\b{series}\b", exprs), series
    for histogram in ("kappa_batch_processing_seconds", "kappa_commit_seconds"):
        for q in ("0.5", "0.99"):
            assert f"histogram_quantile({q}, sum by (job, le) (rate({histogram}_bucket" in exprs, (histogram, q)
    unused = {n for n in KAPPA if not re.search(rf"\b{n}(_bucket|_count|_sum)?\b", exprs)}
    assert not unused, f"metrics the dashboard shows nowhere: {unused}"


# --- The PodMonitor against the Deployments, the jobs' own `job` label and the network policy.


def test_job_names_agree_across_code_deployments_pod_monitor_and_rules():
    deployments = {d["metadata"]["name"]: d for d in of_kind("Deployment")}
    for name, d in deployments.items():
        assert d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == name
        # The container's name is the job's: cAdvisor and kube-state-metrics label it so.
        assert container(d)["name"] == name
    # The `job` label each binary gives its samples.
    jobs = {m for p in (ROOT / "jobs").glob("*.rs") for m in re.findall(r'ops\s*\.spawn\(\s*"([\w-]+)"', p.read_text())}
    jobs |= set(re.findall(r'let job = "([\w-]+)";', SOURCES[ROOT / "src" / "serving" / "api.rs"]))
    # fix-gateway writes its label into each sample line (`{name}{{job=\"fix-gateway\"}} …`).
    jobs |= set(re.findall(r'\{job=\\"([\w-]+)\\"\}', SOURCES[ROOT / "src" / "fix" / "server.rs"]))
    assert jobs == set(deployments)
    (pm,) = [d for _, d in MONITORING_DOCS if d["kind"] == "PodMonitor"]
    (expression,) = pm["spec"]["selector"]["matchExpressions"]
    assert expression["key"] == pm["spec"]["jobLabel"] == "app.kubernetes.io/name" and expression["operator"] == "In"
    assert set(expression["values"]) == jobs
    # Every job list in the rules (`job=~"…"`, `container=~"…"`, absent(up{job="…"}) …) is all of them.
    for r in alerts():
        for listed in re.findall(r'(?:job|container)=~"([^"$]+)"', r["expr"]):
            assert set(listed.split("|")) == jobs, r["alert"]
        if "absent(" in r["expr"]:
            assert set(re.findall(r'absent\(up\{job="([\w-]+)"\}\)', r["expr"])) == jobs, r["alert"]


def test_pod_monitor_scrapes_the_ops_port_that_monitoring_may_reach():
    (pm,) = [d for _, d in MONITORING_DOCS if d["kind"] == "PodMonitor"]
    (endpoint,) = pm["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "ops" and endpoint["path"] == "/metrics"
    # The job's own `job` label wins (no exported_job), equal to the target's anyway.
    assert endpoint["honorLabels"] is True
    config = of_kind("ConfigMap")[0]["data"]
    ops_port = int(config["KAPPA_OPS_BIND"].rsplit(":", 1)[1])
    values = set(pm["spec"]["selector"]["matchExpressions"][0]["values"])
    pods = [d["spec"]["template"]["metadata"]["labels"] for d in of_kind("Deployment")]
    assert len([p for p in pods if p["app.kubernetes.io/name"] in values]) == len(values)
    for d in of_kind("Deployment"):
        ports = {p["name"]: p["containerPort"] for p in container(d)["ports"]}
        assert ports["ops"] == ops_port, d["metadata"]["name"]
        labels = d["spec"]["template"]["metadata"]["labels"]
        admitted = [
            np
            for np in of_kind("NetworkPolicy")
            if np["spec"]["podSelector"].get("matchLabels", {}).items() <= labels.items()
            and "Ingress" in np["spec"]["policyTypes"]
            for rule in np["spec"].get("ingress", [])
            if {"protocol": "TCP", "port": ops_port} in rule.get("ports", [])
            and {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}} in rule["from"]
        ]
        assert admitted, f"no NetworkPolicy lets namespace monitoring reach {d['metadata']['name']}:{ops_port}"
