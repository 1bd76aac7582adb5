"""The `k8s/strimzi-v1/` kustomize component (Strimzi >= 1.0, which serves kafka.strimzi.io/v1
only) turns every Strimzi resource of k8s/ into one the Strimzi 1.0.1 CRDs accept, and leaves
everything else alone. Checked twice: by applying the component's patches here, and — where
kubectl is installed — with kustomize itself (`kubectl kustomize`)."""

import copy
import os
import shutil
import subprocess

import pytest
import yaml
from manifests import DOCS, K8S, SCHEMA_DIR, schemas, violations

COMPONENT = K8S / "strimzi-v1"
V1 = {**schemas(), **schemas(SCHEMA_DIR / "strimzi-v1")}
STRIMZI = "kafka.strimzi.io"


def selected(target, doc):
    group, _, version = doc["apiVersion"].rpartition("/")
    return (
        target.get("group", group) == group
        and target.get("version", version) == version
        and target.get("kind", doc["kind"]) == doc["kind"]
        and target.get("name", doc["metadata"]["name"]) == doc["metadata"]["name"]
    )


def json_patch(doc, ops):
    """RFC 6902 add/replace/remove on object members (what the component uses)."""
    doc = copy.deepcopy(doc)
    for op in ops:
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        node = doc
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        if op["op"] == "remove" or op["op"] == "replace":
            assert last in node, op
        if op["op"] == "remove":
            del node[last]
        elif op["op"] in ("add", "replace"):
            node[last] = op["value"]
        else:
            raise AssertionError(f"unsupported op {op}")
    return doc


def component():
    k = yaml.safe_load((COMPONENT / "kustomization.yaml").read_text())
    assert (k["apiVersion"], k["kind"]) == ("kustomize.config.k8s.io/v1alpha1", "Component")
    assert set(k) <= {"apiVersion", "kind", "patches"}, "only patches are emulated here"
    return k


def apply_component(docs):
    out = []
    for doc in docs:
        for p in component()["patches"]:
            if selected(p["target"], doc):
                doc = json_patch(doc, yaml.safe_load(p["patch"]))
        out.append(doc)
    return out


def check_v1(docs):
    strimzi = [d for d in docs if d["apiVersion"].startswith(STRIMZI + "/")]
    assert {d["kind"] for d in strimzi} == {"Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser"}
    for d in strimzi:
        assert d["apiVersion"] == f"{STRIMZI}/v1", (d["kind"], d["metadata"]["name"])
        assert violations(d, V1, docs) == [], (d["kind"], d["metadata"]["name"])


def test_the_component_makes_every_strimzi_resource_valid_v1():
    base = [d for _, d in DOCS]
    v1 = apply_component(base)
    check_v1(v1)
    changed = [(b, a) for b, a in zip(base, v1) if a != b]
    assert {a["kind"] for _, a in changed} == {"Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser"}
    for b, a in changed:
        assert {**a, "apiVersion": b["apiVersion"]} == b, "only the apiVersion changes"


def test_the_v1beta2_resources_are_not_valid_v1():
    """Without the component, Strimzi 1.0's schemas refuse every Strimzi resource of k8s/."""
    for _, d in DOCS:
        if d["apiVersion"].startswith(STRIMZI + "/"):
            assert violations(d, V1), (d["kind"], d["metadata"]["name"])


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) not installed")
def test_kustomize_builds_k8s_with_the_component(tmp_path):
    """An overlay of the user's: k8s/ as a resource plus the component, built by kustomize."""
    rel = lambda p: os.path.relpath(p, tmp_path)  # noqa: E731  (kustomize wants relative roots)
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({"resources": [rel(K8S)], "components": [rel(COMPONENT)]}))
    run = subprocess.run(["kubectl", "kustomize", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    built = [d for d in yaml.safe_load_all(run.stdout) if d]
    check_v1(built)
    # The same resources as the base build, only the Strimzi apiVersions changed.
    base = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=120)
    assert base.returncode == 0, base.stderr
    expected = apply_component([d for d in yaml.safe_load_all(base.stdout) if d])
    key = lambda d: (d["apiVersion"], d["kind"], d["metadata"]["name"])  # noqa: E731
    assert sorted(built, key=key) == sorted(expected, key=key)
