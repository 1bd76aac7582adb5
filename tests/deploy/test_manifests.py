"""The Kubernetes manifests: custom resources (Strimzi, KEDA, kustomize) against the JSON schemas in
k8s/schemas/ (generated from the operators' CRDs; test_schemas.py checks them) and the run-time
rules of crd_rules.py, core resources with kubernetes-validate --strict, and the cross-references between
them (job flags, probes, selectors, scaling limits, kustomization)."""

import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml
from jobs import check_command, check_env
from manifests import DOCS, K8S, MONITORING, MONITORING_DOCS, container, env_of, of_kind, schemas, violations

SCHEMAS = schemas()
CORE = {
    "Namespace",
    "ConfigMap",
    "Deployment",
    "PodDisruptionBudget",
    "Service",
    "PersistentVolumeClaim",
    "NetworkPolicy",
}
#: The Prometheus Operator's kinds (k8s/monitoring/). Their schemas are generated from the operator's
#: CRDs like the other operators'; while k8s/schemas/ lacks one, its documents are checked for their
#: apiVersion only and test_prometheus_operator_kinds_have_schemas is skipped, saying which.
PROMETHEUS_OPERATOR = {"PodMonitor", "PrometheusRule"}
#: ConfigMap keys that are no job flag's environment variable (read by the logging filter).
NOT_FLAGS = {"RUST_LOG"}
#: The Deployments that consume in a group with Kafka transactions (the stream processors); the
#: others read by assignment and only produce: market-view, fix-gateway.
TRANSACTIONAL = {"match-maker", "sma-calculator", "profit-calculator"}


def test_every_kind_is_checked():
    kinds = {d["kind"] for _, d in DOCS + MONITORING_DOCS}
    unchecked = kinds - CORE - set(SCHEMAS) - PROMETHEUS_OPERATOR
    assert not unchecked, unchecked
    assert {"Kafka", "KafkaNodePool", "KafkaTopic", "ScaledObject", "Deployment"} <= kinds
    assert PROMETHEUS_OPERATOR <= kinds


def test_prometheus_operator_kinds_have_schemas():
    for _, d in MONITORING_DOCS:
        if d["kind"] in PROMETHEUS_OPERATOR:
            assert d["apiVersion"] == "monitoring.coreos.com/v1", d["metadata"]["name"]
    missing = sorted(PROMETHEUS_OPERATOR - set(SCHEMAS))
    if missing:
        pytest.skip(f"no schema yet for {missing} in k8s/schemas/ (generated from the Prometheus Operator's CRDs)")


@pytest.mark.parametrize(
    "name,doc", [(n, d) for n, d in DOCS + MONITORING_DOCS if d["kind"] in SCHEMAS], ids=lambda x: str(x)[:40]
)
def test_custom_resources_match_their_schemas(name, doc):
    assert violations(doc, SCHEMAS) == []


def test_schemas_reject_typos():
    topic = dict(of_kind("KafkaTopic")[0])
    bad = {**topic, "spec": {**topic["spec"], "partitons": 3}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, SCHEMAS["KafkaTopic"])
    pool = of_kind("KafkaNodePool")[0]
    bad = {**pool, "spec": {**pool["spec"], "roles": ["controller", "borker"]}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, SCHEMAS["KafkaNodePool"])


def test_no_annotation_strimzi_ignores():
    """From Strimzi 0.48 — the oldest release running Kafka 4.1 — KRaft and node pools are always
    on and these annotations are ignored (Strimzi's CHANGELOG, 0.48.0)."""
    for d in of_kind({"Kafka", "KafkaNodePool"}):
        annotations = d["metadata"].get("annotations") or {}
        assert not {"strimzi.io/kraft", "strimzi.io/node-pools"} & set(annotations), d["metadata"]["name"]


def kubernetes_validate(*paths):
    exe = shutil.which("kubernetes-validate") or str(Path(__import__("sys").executable).parent / "kubernetes-validate")
    return subprocess.run([exe, "--strict", "-k", "1.31", *map(str, paths)], capture_output=True, text=True)


def test_core_resources_pass_kubernetes_validate_strict():
    run = kubernetes_validate(*sorted(K8S.glob("*.yaml")))
    assert run.returncode == 0, run.stdout + run.stderr
    passed = run.stdout.count(" passed for resource ") + run.stderr.count(" passed for resource ")
    assert passed == len(of_kind(CORE)), run.stdout + run.stderr


def test_kubernetes_validate_catches_a_typo(tmp_path):
    text = (K8S / "market-view.yaml").read_text().replace("readinessProbe:", "readinessProbes:", 1)
    (tmp_path / "bad.yaml").write_text(text)
    assert kubernetes_validate(tmp_path / "bad.yaml").returncode != 0


def test_kustomization_lists_every_manifest():
    k = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(k["resources"]) == files


def test_monitoring_has_its_own_kustomization():
    """k8s/monitoring/ needs the Prometheus Operator's CRDs, so `kubectl apply -k k8s/` must not
    include it; its own kustomization lists its manifests and generates the dashboard's ConfigMap
    in the same namespace."""
    main = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    k = yaml.safe_load((MONITORING / "kustomization.yaml").read_text())
    assert not any("monitoring" in r for r in main["resources"])
    assert set(k["resources"]) == {p.name for p in MONITORING.glob("*.yaml")} - {"kustomization.yaml"}
    assert k["namespace"] == main["namespace"]
    (dashboard,) = k["configMapGenerator"]
    assert dashboard["files"] == ["grafana-dashboard.json"] and (MONITORING / "grafana-dashboard.json").exists()
    assert dashboard["options"]["labels"] == {"grafana_dashboard": "1"}


def test_deployments_have_probes_on_the_ops_port_resources_and_hardening():
    config = of_kind("ConfigMap")[0]["data"]
    ops_port = int(config["KAPPA_OPS_BIND"].rsplit(":", 1)[1])
    for d in of_kind("Deployment"):
        pod = d["spec"]["template"]
        assert d["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
        assert pod["spec"]["terminationGracePeriodSeconds"] >= 30
        c = container(d)
        name = c["command"][0]
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        port_names = {p["name"]: p["containerPort"] for p in c["ports"]}
        # Every job, market-view included, serves /metrics and the probes on the ops port
        # (KAPPA_OPS_BIND), apart from any public port.
        assert port_names["ops"] == ops_port, name
        for probe in ("readinessProbe", "livenessProbe"):
            assert c[probe]["httpGet"]["port"] == "ops", (name, probe)
        assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(ops_port), name
        assert c["resources"]["requests"]["memory"] == c["resources"]["limits"]["memory"]
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        env = env_of(c)
        if name in TRANSACTIONAL:
            # Stateful jobs: one transactional id (and static group member id) per pod, stable
            # across the restarts of its container.
            tid = env["KAPPA_TRANSACTIONAL_ID"]["valueFrom"]["fieldRef"]["fieldPath"]
            assert tid == "metadata.name", name
            assert env["KAPPA_STATIC_MEMBERSHIP"]["value"] == "true", name
        else:
            assert not {"KAPPA_TRANSACTIONAL_ID", "KAPPA_STATIC_MEMBERSHIP"} & set(env), name


def test_deployment_command_lines_and_environment_parse_with_the_real_binaries():
    config = of_kind("ConfigMap")[0]["data"]
    for d in of_kind("Deployment"):
        c = container(d)
        check_command(c["command"][0], [str(a) for a in c["args"]])
        # Every variable a job is given is one of its flags: a misspelled name would be ignored.
        check_env(c["command"][0], set(env_of(c)) | (set(config) - NOT_FLAGS))


def test_market_view_serves_the_api_with_keys_host_checks_and_limits():
    d = next(d for d in of_kind("Deployment") if d["metadata"]["name"] == "market-view")
    c = container(d)
    args = [str(a) for a in c["args"]]

    def arg(flag):
        return args[args.index(flag) + 1]

    assert arg("--bind") == "0.0.0.0:8080"
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in d["spec"]["template"]["spec"]["volumes"]}
    keys = arg("--api-keys")
    (mount,) = [m for m in mounts.values() if keys.startswith(m["mountPath"] + "/")]
    assert mount["readOnly"] is True
    secret = volumes[mount["name"]]["secret"]
    assert secret["secretName"] == "kappa-api-keys"
    assert keys.removeprefix(mount["mountPath"] + "/") in {i["path"] for i in secret["items"]}
    hosts = arg("--allowed-hosts").split(",")
    assert "market-view.kappa.svc.cluster.local" in hosts and "*" not in hosts
    assert arg("--client-ip-header") == "X-Real-IP"
    for flag in ("--trader-rate", "--trader-burst", "--ip-rate", "--ip-burst", "--max-streams", "--max-streams-per-ip"):
        assert int(arg(flag)) > 0, flag
    assert "--cors-origins" not in args and "KAPPA_CORS_ORIGINS" not in env_of(c)


def test_every_deployment_has_a_pdb_and_each_service_selects_its_deployment():
    deployments = {d["metadata"]["name"]: d for d in of_kind("Deployment")}
    pdbs = {p["metadata"]["name"]: p for p in of_kind("PodDisruptionBudget")}
    assert set(pdbs) == set(deployments)
    for name, pdb in pdbs.items():
        assert pdb["spec"]["selector"]["matchLabels"] == deployments[name]["spec"]["selector"]["matchLabels"]
        if deployments[name]["spec"].get("replicas") == 1:
            # A budget of minAvailable 1 over one pod would block every node drain.
            assert pdb["spec"].get("maxUnavailable") == 1, name
    # The services with a public port: market-view's API, fix-gateway's FIX sessions.
    services = {s["metadata"]["name"]: s for s in of_kind("Service")}
    assert set(services) == {"market-view", "fix-gateway"}
    for name, svc in services.items():
        assert svc["spec"]["selector"] == deployments[name]["spec"]["selector"]["matchLabels"], name


def test_no_service_exposes_an_ops_port():
    config = of_kind("ConfigMap")[0]["data"]
    ops_port = int(config["KAPPA_OPS_BIND"].rsplit(":", 1)[1])
    deployments = of_kind("Deployment")
    for svc in of_kind("Service"):
        selector = svc["spec"]["selector"].items()
        selected = [d for d in deployments if selector <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert selected, svc["metadata"]["name"]
        for d in selected:
            ports = {p["name"]: p["containerPort"] for p in container(d)["ports"]}
            for p in svc["spec"]["ports"]:
                target = p.get("targetPort", p["port"])
                number = ports.get(target, target)
                assert target != "ops" and number != ops_port and p["port"] != ops_port, (svc["metadata"]["name"], p)
                assert number in ports.values(), (svc["metadata"]["name"], p)


def test_match_maker_scales_on_lag_up_to_the_orders_partitions():
    (so,) = of_kind("ScaledObject")
    topics = {t["metadata"]["name"]: t["spec"] for t in of_kind("KafkaTopic")}
    (trigger,) = so["spec"]["triggers"]
    mm = next(d for d in of_kind("Deployment") if d["metadata"]["name"] == so["spec"]["scaleTargetRef"]["name"])
    args = mm["spec"]["template"]["spec"]["containers"][0]["args"]
    assert trigger["metadata"]["consumerGroup"] == args[args.index("--group") + 1]
    assert so["spec"]["maxReplicaCount"] == topics[trigger["metadata"]["topic"]]["partitions"]
    auths = {a["metadata"]["name"] for a in of_kind("TriggerAuthentication")}
    assert trigger["authenticationRef"]["name"] in auths


def test_every_topic_the_code_uses_exists():
    names = {t["metadata"]["name"] for t in of_kind("KafkaTopic")}
    base = {"orders", "trades", "order-events", "book", "rejects", "analytics"}
    assert base <= names
    for prefix in ("replay.", "report."):
        assert {prefix + "analytics", prefix + "rejects"} <= names
    # Sources of truth are kept forever; the derived topics expire or compact (a compacted-only
    # topic keeps its newest record per key whatever its retention).
    for t in of_kind("KafkaTopic"):
        if t["spec"]["config"]["cleanup.policy"] == "compact":
            continue
        forever = t["spec"]["config"]["retention.ms"] == -1
        assert forever == (t["metadata"]["name"] in {"orders", "trades"}), t["metadata"]["name"]
    # Every stateful job has its compacted snapshot (changelog) topic.
    for job in ("match-maker", "sma-calculator", "profit-calculator"):
        (t,) = [t for t in of_kind("KafkaTopic") if t["metadata"]["name"] == job + "-snapshots"]
        assert t["spec"]["config"]["cleanup.policy"] == "compact", job


def test_the_image_contains_every_binary_the_pods_run():
    """The Dockerfile copies exactly the binaries the Deployments and DAG pods may run (`JOBS`,
    which check_command requires of every command line): a new job whose binary is not copied
    into the image would deploy a pod that cannot start (fix-gateway did)."""
    import re

    from jobs import JOBS

    dockerfile = (Path(__file__).resolve().parents[2] / "Dockerfile").read_text()
    copied = set(re.findall(r"target/release/([A-Za-z0-9_-]+)", dockerfile))
    assert copied == JOBS, f"in the image: {sorted(copied)}; run by pods: {sorted(JOBS)}"
