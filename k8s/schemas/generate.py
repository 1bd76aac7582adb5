#!/usr/bin/env python3
"""Generates the JSON Schemas (draft 2020-12) of k8s/schemas/ from the operators' published CRDs.

The CRDs are vendored verbatim under upstream/<operator>-<version>/ (their git blob ids are pinned
below, so a hand edit fails), which keeps generation offline and reproducible:

    python3 k8s/schemas/generate.py            # rewrite the generated schemas
    python3 k8s/schemas/generate.py --check    # exit 1 if a committed schema differs
    python3 k8s/schemas/generate.py --vendor strimzi-0.51.0 GIT_DIR
                                               # copy one source's CRDs from a git clone of the
                                               # operator's repository (at the pinned commit)

Each CRD's `openAPIV3Schema` of the pinned version becomes one schema, converted the way the API
server applies it to a manifest sent with strict field validation (`kubectl apply`, the default
since Kubernetes 1.27):

- `apiVersion` and `kind` become constants and `metadata` the ObjectMeta rules of apimachinery
  (name, namespace, labels and annotations syntax; unknown metadata fields refused);
- an object schema is closed (`additionalProperties: false`) unless it has
  `x-kubernetes-preserve-unknown-fields: true` or an `additionalProperties` schema of its own: the
  API server prunes (and with strict validation rejects) any field its schema does not name;
- `x-kubernetes-int-or-string: true` becomes `type: [integer, string]` (so a float such as
  `cpu: 0.5` is refused, as the API server does; a `pattern` applies to the string form);
- `nullable: true` adds `null`; without it a null value is refused (the API server would silently
  prune it, so `topicOperator:` with no value would disable the Topic Operator);
- OpenAPI 3.0's boolean `exclusiveMinimum`/`exclusiveMaximum` become the 2020-12 numeric form;
  `x-kubernetes-list-type: set` becomes `uniqueItems: true`;
- a `pattern` is in the API server's (Go, RE2) syntax: one whose flags follow the `^`
  (`^(?i)...`, which RE2 allows and Python's `re`, used by jsonschema, refuses) gets them in
  front (`(?i)^...`, the same language); any other pattern Python cannot compile is an error;
- `anyOf`/`oneOf`/`allOf`/`not` branches are converted without closing (in a structural schema
  they only add constraints to the fields declared outside them);
- CEL rules (`x-kubernetes-validations`) are kept verbatim as annotations: JSON Schema cannot run
  them, so they are not checked here (tests/deploy/crd_rules.py re-checks KEDA's minReplicaCount
  <= maxReplicaCount); `description`s are dropped (they are in the vendored CRDs).

Requires PyYAML only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
UPSTREAM = HERE / "upstream"


@dataclass(frozen=True)
class Source:
    """One operator release: where its CRDs come from, which version of them to serve and where
    the schemas go (relative to k8s/schemas/)."""

    name: str  # upstream/<name>/
    repo: str  # GitHub owner/name
    tag: str
    commit: str
    path: str  # directory of the CRDs in the repository
    files: dict[str, str]  # file name -> git blob id at `commit`
    version: str  # the CRD version the schemas validate
    out: str  # output directory under k8s/schemas/ ("" for k8s/schemas/ itself)


SOURCES = [
    # The last Strimzi release that serves kafka.strimzi.io/v1beta2 (0.48–0.51 run Kafka 4.1 on it).
    Source(
        name="strimzi-0.51.0",
        repo="strimzi/strimzi-kafka-operator",
        tag="0.51.0",
        commit="54081abf97d0e5e524de773b88343756934db1a8",
        path="install/cluster-operator",
        files={
            "040-Crd-kafka.yaml": "25a231e2087cf8901c9cf7286629fa5e76472637",
            "043-Crd-kafkatopic.yaml": "00bff67b22db3d1df4c36a690dac0a97962a91ed",
            "044-Crd-kafkauser.yaml": "5d887618f9375a82234962d3506e8c9edfa32a5b",
            "045-Crd-kafkanodepool.yaml": "b6efce3b64860fb9f1c139eaac9185d2215b383d",
        },
        version="v1beta2",
        out="",
    ),
    # Strimzi 1.0 serves kafka.strimzi.io/v1 only (the k8s/strimzi-v1/ overlay).
    Source(
        name="strimzi-1.0.1",
        repo="strimzi/strimzi-kafka-operator",
        tag="1.0.1",
        commit="833dbbd4fc745678f11ad96ed66571704cd73cd0",
        path="install/cluster-operator",
        files={
            "040-Crd-kafka.yaml": "6eb1ff089d89232c1be5d2bda47a479350c1228c",
            "043-Crd-kafkatopic.yaml": "f239899977215306017af3fbf6f73ce4c52db813",
            "044-Crd-kafkauser.yaml": "8f071e77e0d7b72f3f1bce74cad2b2f8d8db04df",
            "045-Crd-kafkanodepool.yaml": "6a89a713d9d0933763192887a3028b22f4dad372",
        },
        version="v1",
        out="strimzi-v1",
    ),
    Source(
        name="keda-2.20.2",
        repo="kedacore/keda",
        tag="v2.20.2",
        commit="68a5b5028f35b22d50597c69819ab32c4e92f21a",
        path="config/crd/bases",
        files={
            "keda.sh_scaledobjects.yaml": "f0302424ebce7f1903433910ae7a978c73ae85f3",
            "keda.sh_triggerauthentications.yaml": "e345ac8f39d464ad6fb41d202dfd3de5e7b36911",
        },
        version="v1alpha1",
        out="",
    ),
    Source(
        name="prometheus-operator-0.93.0",
        repo="prometheus-operator/prometheus-operator",
        tag="v0.93.0",
        commit="f8fafd475f3d132e239432ae6172de60a6cb6516",
        path="example/prometheus-operator-crd",
        files={
            "monitoring.coreos.com_podmonitors.yaml": "5c1bde3d4a5f3131fd6c148ab933193b867173f2",
            "monitoring.coreos.com_prometheusrules.yaml": "b423c3225b18489ca7bbc5091f38f7003c4bf3fc",
            "monitoring.coreos.com_servicemonitors.yaml": "f5736255990a0e152851fadb55f84d6fd0f91d87",
        },
        version="v1",
        out="",
    ),
]

# --- ObjectMeta ------------------------------------------------------------------------------
# The API server validates `metadata` itself (k8s.io/apimachinery ValidateObjectMeta), not with the
# CRD's schema (which says only `type: object`): names are DNS-1123 subdomains, the namespace a
# DNS-1123 label, label keys and annotation keys qualified names, label values at most 63
# characters of [A-Za-z0-9_.-] starting and ending alphanumeric.
DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN = rf"{DNS1123_LABEL}(\.{DNS1123_LABEL})*"
QUALIFIED_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]"
QUALIFIED_KEY = rf"^({DNS1123_SUBDOMAIN}/)?{QUALIFIED_NAME}$"
LABEL_VALUE = rf"^({QUALIFIED_NAME})?$"

OBJECT_META = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 253, "pattern": f"^{DNS1123_SUBDOMAIN}$"},
        "generateName": {"type": "string"},
        "namespace": {"type": "string", "maxLength": 63, "pattern": f"^{DNS1123_LABEL}$"},
        "labels": {
            "type": "object",
            "propertyNames": {"pattern": QUALIFIED_KEY},
            "additionalProperties": {"type": "string", "maxLength": 63, "pattern": LABEL_VALUE},
        },
        "annotations": {
            "type": "object",
            "propertyNames": {"pattern": QUALIFIED_KEY},
            "additionalProperties": {"type": "string"},
        },
        "finalizers": {"type": "array", "items": {"type": "string"}},
    },
    "additionalProperties": False,
    "anyOf": [{"required": ["name"]}, {"required": ["generateName"]}],
}

# Keywords of a CRD schema that carry over unchanged.
KEPT = (
    "enum",
    "pattern",
    "format",
    "minimum",
    "maximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minProperties",
    "maxProperties",
    "required",
    "default",
)
# Keywords dropped: documentation, and extensions already translated.
DROPPED = {
    "description",
    "example",
    "externalDocs",
    "title",
    "type",
    "nullable",
    "properties",
    "additionalProperties",
    "items",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "x-kubernetes-int-or-string",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-embedded-resource",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
    "x-kubernetes-validations",
}
INT_OR_STRING = [{"type": "integer"}, {"type": "string"}]


def convert(node: dict, where: str, structural: bool = True) -> dict:
    """One CRD (OpenAPI v3, structural) schema node as a JSON Schema 2020-12 node. `structural` is
    False inside anyOf/oneOf/allOf/not, whose branches constrain but do not declare fields."""
    unknown = set(node) - DROPPED - set(KEPT)
    if unknown:
        raise ValueError(f"{where}: unsupported schema keywords {sorted(unknown)}")
    out: dict = {}
    types: list[str] = []
    if node.get("x-kubernetes-int-or-string"):
        types = ["integer", "string"]
    elif "type" in node:
        types = [node["type"]]
    if types and node.get("nullable"):
        types.append("null")
    if types:
        out["type"] = types[0] if len(types) == 1 else types
    for key in KEPT:
        if key in node:
            out[key] = node[key]
    if "pattern" in out:
        out["pattern"] = python_pattern(out["pattern"], where)
    if node.get("nullable") and "enum" in out and None not in out["enum"]:
        out["enum"] = [*out["enum"], None]
    for bound in ("Minimum", "Maximum"):
        flag = node.get("exclusive" + bound)
        if flag is True:
            out["exclusive" + bound] = out.pop(bound.lower())
        elif flag not in (None, False):
            raise ValueError(f"{where}: exclusive{bound} {flag!r}")
    if node.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    if "properties" in node:
        out["properties"] = {
            k: convert(v, f"{where}.{k}", structural) for k, v in node["properties"].items()
        }
    if node.get("x-kubernetes-embedded-resource"):
        # An embedded object (e.g. a pod template): apiVersion, kind and metadata are implied.
        props = out.setdefault("properties", {})
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        props.setdefault("metadata", {"type": "object"})
    if "additionalProperties" in node:
        extra = node["additionalProperties"]
        out["additionalProperties"] = extra if isinstance(extra, bool) else convert(extra, f"{where}.*")
    elif structural and node.get("type") == "object" and not node.get("x-kubernetes-preserve-unknown-fields"):
        # Everything not declared is pruned by the API server (rejected under strict validation).
        out["additionalProperties"] = False
    if "items" in node:
        out["items"] = convert(node["items"], f"{where}[]", structural)
    for key in ("allOf", "anyOf", "oneOf"):
        if key in node:
            branches = node[key]
            if node.get("x-kubernetes-int-or-string") and branches == INT_OR_STRING:
                continue  # already `type: [integer, string]`
            out[key] = [convert(b, f"{where}.{key}[{i}]", structural=False) for i, b in enumerate(branches)]
    if "not" in node:
        out["not"] = convert(node["not"], f"{where}.not", structural=False)
    if "x-kubernetes-validations" in node:
        out["x-kubernetes-validations"] = node["x-kubernetes-validations"]
    return out


def python_pattern(pattern: str, where: str) -> str:
    """An RE2 `pattern` in Python's syntax (see the module's docstring)."""
    moved = re.sub(r"^\^(\(\?[ims]+\))", r"\1^", pattern)
    try:
        re.compile(moved)
    except re.error as e:
        raise ValueError(f"{where}: pattern {pattern!r}: {e}") from None
    return moved


def crd_schema(source: Source, file: str) -> tuple[str, dict]:
    """(kind, JSON Schema) of one vendored CRD at `source.version`."""
    crd = yaml.load((UPSTREAM / source.name / file).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    assert crd["kind"] == "CustomResourceDefinition", file
    spec = crd["spec"]
    kind, group = spec["names"]["kind"], spec["group"]
    (version,) = [v for v in spec["versions"] if v["name"] == source.version]
    if not version.get("served"):
        raise ValueError(f"{file}: {source.version} is not served")
    where = f"{kind} ({group}/{source.version})"
    schema = convert(version["schema"]["openAPIV3Schema"], where)
    props = schema["properties"]
    props["apiVersion"] = {"const": f"{group}/{source.version}"}
    props["kind"] = {"const": kind}
    props["metadata"] = OBJECT_META
    required = ["apiVersion", "kind", "metadata"]
    schema["required"] = required + [r for r in schema.get("required", []) if r not in required]
    header = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": (
            f"Generated by k8s/schemas/generate.py from upstream/{source.name}/{file} "
            f"({source.repo} {source.tag}, commit {source.commit}), version {source.version}. Do not edit."
        ),
        "title": where,
    }
    return kind, {**header, **schema}


def generate() -> dict[Path, str]:
    """Every generated schema file and its text."""
    out = {}
    for source in SOURCES:
        check_vendored(source)
        for file in source.files:
            kind, schema = crd_schema(source, file)
            out[HERE / source.out / f"{kind}.json"] = json.dumps(schema, indent=1) + "\n"
    return out


def blob_id(data: bytes) -> str:
    """The git blob id of `data` (what `git hash-object` prints)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def check_vendored(source: Source) -> None:
    """The vendored files are the upstream ones, byte for byte, and nothing else is there."""
    folder = UPSTREAM / source.name
    present = {p.name for p in folder.glob("*.yaml")}
    if present != set(source.files):
        raise SystemExit(f"{folder}: files {sorted(present)} != pinned {sorted(source.files)}")
    for file, blob in source.files.items():
        actual = blob_id((folder / file).read_bytes())
        if actual != blob:
            raise SystemExit(f"{folder / file}: blob {actual} != pinned {blob} ({source.repo}@{source.commit})")


def vendor(name: str, git_dir: str) -> None:
    """Copies one source's CRDs from a git repository at the pinned commit."""
    (source,) = [s for s in SOURCES if s.name == name]
    folder = UPSTREAM / source.name
    folder.mkdir(parents=True, exist_ok=True)
    for file in source.files:
        data = subprocess.run(
            ["git", "--git-dir", git_dir, "show", f"{source.commit}:{source.path}/{file}"],
            check=True,
            capture_output=True,
        ).stdout
        (folder / file).write_bytes(data)
    check_vendored(source)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only compare with the committed schemas")
    parser.add_argument("--vendor", nargs=2, metavar=("SOURCE", "GIT_DIR"), help="copy a source's CRDs")
    args = parser.parse_args()
    if args.vendor:
        vendor(*args.vendor)
        return 0
    stale = []
    for path, text in generate().items():
        if not path.exists() or path.read_text() != text:
            stale.append(path)
            if not args.check:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
    if args.check and stale:
        print("stale:", *(str(p.relative_to(HERE)) for p in stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
