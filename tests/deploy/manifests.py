"""The Kubernetes manifests of k8s/, loaded once, and the helpers the deployment tests share."""

import json

import crd_rules
import jsonschema
import yaml
from conftest import ROOT

K8S = ROOT / "k8s"
SCHEMA_DIR = K8S / "schemas"
MONITORING = K8S / "monitoring"


def docs(folder=K8S):
    """The documents of the YAML files of `folder`, each with its path under k8s/."""
    out = []
    for path in sorted(folder.glob("*.yaml")):
        for d in yaml.safe_load_all(path.read_text()):
            if d:
                out.append((str(path.relative_to(K8S)), d))
    return out


#: What `kubectl apply -k k8s/` applies (and its kustomization).
DOCS = docs()
#: k8s/monitoring/: the Prometheus Operator's resources (PodMonitor, PrometheusRule) and their own
#: kustomization, applied separately (`kubectl apply -k k8s/monitoring/`). Not in DOCS, which the
#: cross-checks read as the application's own resources.
MONITORING_DOCS = docs(MONITORING)


def of_kind(kind):
    return [d for _, d in DOCS if d["kind"] in (kind if isinstance(kind, set) else {kind})]


def named(kind, name):
    (d,) = [d for d in of_kind(kind) if d["metadata"]["name"] == name]
    return d


def container(deployment):
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    return c


def env_of(c):
    """A container's `env` entries by name (manifest form: name, value / valueFrom)."""
    return {e["name"]: e for e in c.get("env", [])}


def schemas(folder=SCHEMA_DIR):
    """The JSON schemas of a folder of k8s/schemas/, by kind."""
    return {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")}


def violations(doc, by_kind, docs=None):
    """What a custom resource breaks: its schema (generated from the operator's CRD) and the
    run-time rules of crd_rules.py. Empty: valid."""
    validator = jsonschema.Draft202012Validator(by_kind[doc["kind"]])
    found = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]
    return found + crd_rules.errors(doc, [d for _, d in DOCS] if docs is None else docs)
