"""The Kubernetes manifests: custom resources (Strimzi, KEDA, kustomize) against the JSON schemas in
k8s/schemas/, core resources with kubernetes-validate --strict, and the cross-references between
them (job flags, probes, selectors, scaling limits, kustomization)."""

import json
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml
from conftest import ROOT
from jobs import check_command

K8S = ROOT / "k8s"
SCHEMAS = {p.stem: json.loads(p.read_text()) for p in (K8S / "schemas").glob("*.json")}
CORE = {"Namespace", "ConfigMap", "Deployment", "PodDisruptionBudget", "Service", "PersistentVolumeClaim"}


def docs():
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        for d in yaml.safe_load_all(path.read_text()):
            if d:
                out.append((path.name, d))
    return out


DOCS = docs()


def of_kind(kind):
    return [d for _, d in DOCS if d["kind"] in (kind if isinstance(kind, set) else {kind})]


def test_every_kind_is_checked():
    kinds = {d["kind"] for _, d in DOCS}
    assert kinds <= CORE | set(SCHEMAS), kinds - CORE - set(SCHEMAS)
    assert {"Kafka", "KafkaNodePool", "KafkaTopic", "ScaledObject", "Deployment"} <= kinds


@pytest.mark.parametrize("name,doc", [(n, d) for n, d in DOCS if d["kind"] in SCHEMAS], ids=lambda x: str(x)[:40])
def test_custom_resources_match_their_schemas(name, doc):
    jsonschema.validate(doc, SCHEMAS[doc["kind"]], cls=jsonschema.Draft202012Validator)


def test_schemas_reject_typos():
    topic = dict(of_kind("KafkaTopic")[0])
    bad = {**topic, "spec": {**topic["spec"], "partitons": 3}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, SCHEMAS["KafkaTopic"])
    pool = of_kind("KafkaNodePool")[0]
    bad = {**pool, "spec": {**pool["spec"], "roles": ["controller", "borker"]}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, SCHEMAS["KafkaNodePool"])


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


def test_deployments_run_real_flags_with_probes_resources_and_secrets():
    config = of_kind("ConfigMap")[0]["data"]
    for d in of_kind("Deployment"):
        pod = d["spec"]["template"]["spec"]
        assert d["spec"]["selector"]["matchLabels"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
        assert pod["terminationGracePeriodSeconds"] >= 30
        (c,) = pod["containers"]
        check_command(c["command"][0], [str(a) for a in c["args"]])
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        port_names = {p["name"]: p["containerPort"] for p in c["ports"]}
        probe_port = port_names[c["readinessProbe"]["httpGet"]["port"]]
        if c["command"][0] == "market-view":
            assert "0.0.0.0:%d" % probe_port in c["args"]
        else:
            assert config["KAPPA_OPS_BIND"].endswith(":%d" % probe_port)
        assert c["resources"]["requests"]["memory"] == c["resources"]["limits"]["memory"]
        env = {e["name"]: e for e in c.get("env", [])}
        assert env["KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "kappa-app"
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        if c["command"][0] != "market-view":
            # Stateful jobs: one transactional id (and static group member id) per pod, stable
            # across the restarts of its container.
            tid = env["KAPPA_TRANSACTIONAL_ID"]["valueFrom"]["fieldRef"]["fieldPath"]
            assert tid == "metadata.name", c["command"][0]
            assert env["KAPPA_STATIC_MEMBERSHIP"]["value"] == "true", c["command"][0]


def test_every_deployment_has_a_pdb_and_the_service_selects_market_view():
    deployments = {d["metadata"]["name"]: d for d in of_kind("Deployment")}
    pdbs = {p["metadata"]["name"]: p for p in of_kind("PodDisruptionBudget")}
    assert set(pdbs) == set(deployments)
    for name, pdb in pdbs.items():
        assert pdb["spec"]["selector"]["matchLabels"] == deployments[name]["spec"]["selector"]["matchLabels"]
    (svc,) = of_kind("Service")
    assert svc["spec"]["selector"] == deployments["market-view"]["spec"]["selector"]["matchLabels"]


def test_match_maker_scales_on_lag_up_to_the_orders_partitions():
    (so,) = of_kind("ScaledObject")
    topics = {t["metadata"]["name"]: t["spec"] for t in of_kind("KafkaTopic")}
    (trigger,) = so["spec"]["triggers"]
    mm = next(d for d in of_kind("Deployment") if d["metadata"]["name"] == so["spec"]["scaleTargetRef"]["name"])
    args = mm["spec"]["template"]["spec"]["containers"][0]["args"]
    assert trigger["metadata"]["consumerGroup"] == args[args.index("--group") + 1]
    assert so["spec"]["maxReplicaCount"] == topics[trigger["metadata"]["topic"]]["partitions"]
    auth = of_kind("TriggerAuthentication")[0]["metadata"]["name"]
    assert trigger["authenticationRef"]["name"] == auth


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
