"""The Kubernetes manifests of k8s/, loaded once, and the helpers the deployment tests share."""

import yaml
from conftest import ROOT

K8S = ROOT / "k8s"


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


def named(kind, name):
    (d,) = [d for d in of_kind(kind) if d["metadata"]["name"] == name]
    return d


def container(deployment):
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    return c


def env_of(c):
    """A container's `env` entries by name (manifest form: name, value / valueFrom)."""
    return {e["name"]: e for e in c.get("env", [])}
