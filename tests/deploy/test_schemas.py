"""k8s/schemas/: the schemas are exactly what k8s/schemas/generate.py makes of the vendored
upstream CRDs (which are the pinned upstream files), and with crd_rules.py they refuse what the
API server or the operators would refuse: floats and free text as quantities, missing required
fields, unknown fields, too-small segments, KEDA metadata the scaler does not read."""

import copy
import importlib.util
import json
import sys

import jsonschema
import pytest
from manifests import SCHEMA_DIR, of_kind, schemas, violations

spec = importlib.util.spec_from_file_location("kappa_schema_generate", SCHEMA_DIR / "generate.py")
generate = sys.modules["kappa_schema_generate"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(generate)

SCHEMAS = schemas()
HAND_WRITTEN = {SCHEMA_DIR / "Kustomization.json"}  # kustomize's, not an operator's CRD


def test_schemas_are_generated_from_the_pinned_crds_byte_for_byte():
    generated = generate.generate()
    for path, text in generated.items():
        assert path.exists(), f"{path} missing: run python3 k8s/schemas/generate.py"
        assert path.read_text() == text, f"{path} differs from its generation: run python3 k8s/schemas/generate.py"
    on_disk = set(SCHEMA_DIR.rglob("*.json"))
    assert on_disk - HAND_WRITTEN == set(generated), sorted(map(str, on_disk - HAND_WRITTEN ^ set(generated)))


def test_vendored_crds_are_the_upstream_files(tmp_path, monkeypatch):
    for source in generate.SOURCES:
        generate.check_vendored(source)  # git blob ids as pinned
        assert len(source.commit) == 40 and source.files
    # A hand edit of a vendored CRD is caught.
    source = generate.SOURCES[0]
    copy_dir = tmp_path / source.name
    copy_dir.mkdir()
    for f in source.files:
        (copy_dir / f).write_bytes((generate.UPSTREAM / source.name / f).read_bytes())
    first = next(iter(source.files))
    (copy_dir / first).write_bytes((copy_dir / first).read_bytes().replace(b"minimum: 1", b"minimum: 0", 1))
    monkeypatch.setattr(generate, "UPSTREAM", tmp_path)
    with pytest.raises(SystemExit, match="blob"):
        generate.check_vendored(source)


def test_every_schema_is_a_valid_2020_12_schema_of_its_kind():
    for folder in (SCHEMA_DIR, SCHEMA_DIR / "strimzi-v1"):
        for kind, schema in schemas(folder).items():
            jsonschema.Draft202012Validator.check_schema(schema)
            if folder / f"{kind}.json" not in HAND_WRITTEN:
                assert schema["properties"]["kind"] == {"const": kind}
                assert schema["additionalProperties"] is False


# --- the converter ------------------------------------------------------------------------------


def test_conversion_follows_the_api_server():
    crd = {
        "type": "object",
        "properties": {
            "closed": {"type": "object", "properties": {"a": {"type": "string"}}},
            "empty": {"type": "object"},
            "open": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "map": {"type": "object", "additionalProperties": {"type": "string"}},
            "qty": {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}], "pattern": "^[0-9]+m?$"},
            "maybe": {"type": "string", "nullable": True, "enum": ["x"]},
            "n": {"type": "integer", "minimum": 0, "exclusiveMinimum": True},
            "set": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
            "one": {
                "type": "object",
                "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
                "oneOf": [{"properties": {"a": {}}, "required": ["a"]}, {"properties": {"b": {}}, "required": ["b"]}],
            },
        },
    }
    schema = generate.convert(crd, "test")
    v = jsonschema.Draft202012Validator(schema)
    ok = {"closed": {"a": "x"}, "empty": {}, "open": {"any": 1}, "map": {"k": "v"}, "qty": "100m", "maybe": None, "n": 1, "set": ["a", "b"], "one": {"a": "x"}}
    assert list(v.iter_errors(ok)) == []
    assert v.is_valid({"qty": 2})
    for bad in (
        {"closed": {"a": "x", "typo": 1}},
        {"empty": {"x": 1}},
        {"map": {"k": 1}},
        {"qty": 0.5},
        {"qty": "lots"},
        {"closed": None},
        {"maybe": "y"},
        {"n": 0},
        {"set": ["a", "a"]},
        {"one": {"a": "x", "b": "y"}},
        {"one": {}},
        {"unknown": 1},
    ):
        assert not v.is_valid(bad), bad
    with pytest.raises(ValueError, match="unsupported"):
        generate.convert({"type": "string", "x-made-up": 1}, "test")


# --- negative tests: what the generated schemas (and the run-time rules) refuse --------------


def first(kind):
    return copy.deepcopy(of_kind(kind)[0])


def schema_only(doc):
    return list(jsonschema.Draft202012Validator(SCHEMAS[doc["kind"]]).iter_errors(doc))


def refused(doc, by_schema):
    """`doc` is refused, by the generated schema itself (by_schema) or only by crd_rules.py."""
    assert violations(doc, SCHEMAS), doc
    assert bool(schema_only(doc)) == by_schema, [e.message for e in schema_only(doc)]


def test_the_manifests_pass_before_they_are_broken():
    for kind in ("KafkaNodePool", "KafkaTopic", "Kafka", "ScaledObject", "TriggerAuthentication", "KafkaUser"):
        assert violations(first(kind), SCHEMAS) == [], kind


@pytest.mark.parametrize("value", [0.5, 1.5])
def test_a_float_cpu_is_refused(value):
    pool = first("KafkaNodePool")
    pool["spec"]["resources"]["requests"]["cpu"] = value
    refused(pool, by_schema=True)


@pytest.mark.parametrize("value", ["4 gigs", "4GB", "lots", "4Gi "])
def test_a_free_text_memory_is_refused(value):
    pool = first("KafkaNodePool")
    pool["spec"]["resources"]["limits"]["memory"] = value
    refused(pool, by_schema=True)


def test_missing_required_sub_fields_are_refused():
    pool = first("KafkaNodePool")
    del pool["spec"]["storage"]["volumes"][0]["type"]
    refused(pool, by_schema=True)
    kafka = first("Kafka")
    kafka["spec"]["kafka"]["listeners"][0]["authentication"] = {}
    refused(kafka, by_schema=True)
    auth = first("TriggerAuthentication")
    del auth["spec"]["secretTargetRef"][0]["key"]
    refused(auth, by_schema=True)
    so = first("ScaledObject")
    del so["spec"]["scaleTargetRef"]["name"]
    refused(so, by_schema=True)


def test_unknown_fields_and_values_are_refused():
    for kind, change in (
        ("KafkaTopic", lambda d: d["spec"].update(partitons=3)),
        ("KafkaNodePool", lambda d: d["spec"].update(roles=["controller", "borker"])),
        ("KafkaNodePool", lambda d: d["spec"]["storage"]["volumes"][0].update(sise="1Gi")),
        ("Kafka", lambda d: d["spec"]["kafka"]["listeners"][0].update(tsl=True)),
        ("Kafka", lambda d: d["spec"]["entityOperator"].update(topicOperator=None)),
        ("Kafka", lambda d: d["metadata"].update(labelz={})),
        ("KafkaUser", lambda d: d["spec"]["authorization"]["acls"][0].update(operations=["Raed"])),
        ("ScaledObject", lambda d: d["spec"]["triggers"][0]["metadata"].update(lagThreshold=5000)),
        ("ScaledObject", lambda d: d["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"].update(scaleDwn={})),
    ):
        doc = first(kind)
        change(doc)
        refused(doc, by_schema=True)


@pytest.mark.parametrize("value", [1000, "1048575", 14])
def test_a_too_small_segment_bytes_is_refused(value):
    """Kafka 4 refuses segment.bytes below 1 MiB; the CRD's `config` is an open map."""
    topic = first("KafkaTopic")
    topic["spec"]["config"]["segment.bytes"] = value
    refused(topic, by_schema=False)
    topic["spec"]["config"]["segment.bytes"] = 1024 * 1024
    assert violations(topic, SCHEMAS) == []


def test_bad_topic_configs_are_refused():
    for key, value in (
        ("retention.msec", 1000),
        ("retention.ms", -2),
        ("cleanup.policy", "compacted"),
        ("min.insync.replicas", 0),
        ("compression.type", "zip"),
        ("message.timestamp.type", "AppendTime"),
        ("min.cleanable.dirty.ratio", 1.5),
        ("segment.bytes", 2**31),
        ("min.compaction.lag.ms", "soon"),
    ):
        topic = first("KafkaTopic")
        topic["spec"]["config"][key] = value
        refused(topic, by_schema=False)
    topic = first("KafkaTopic")
    topic["spec"]["config"].update({"min.compaction.lag.ms": 10, "max.compaction.lag.ms": 5})
    refused(topic, by_schema=False)


@pytest.mark.parametrize("key", ["consumerGrup", "lagThresold", "saslType", "unsafeSsl"])
def test_an_unknown_keda_kafka_metadata_key_is_refused(key):
    so = first("ScaledObject")
    so["spec"]["triggers"][0]["metadata"][key] = "x"
    refused(so, by_schema=False)


def test_bad_keda_kafka_metadata_values_are_refused():
    for key, value in (
        ("lagThreshold", "0"),
        ("lagThreshold", "5k"),
        ("activationLagThreshold", "-1"),
        ("offsetResetPolicy", "smallest"),
        ("sasl", "scram-sha-512"),
        ("sasl", "gssapi"),  # KEDA 2.17+ only
        ("tls", "true"),
        ("allowIdleConsumers", "yes"),
        ("bootstrapServers", "kappa-kafka-bootstrap"),
    ):
        so = first("ScaledObject")
        so["spec"]["triggers"][0]["metadata"][key] = value
        refused(so, by_schema=False)
    so = first("ScaledObject")
    del so["spec"]["triggers"][0]["metadata"]["consumerGroup"]
    refused(so, by_schema=False)
    so = first("ScaledObject")
    so["spec"]["minReplicaCount"] = so["spec"]["maxReplicaCount"] + 1
    refused(so, by_schema=False)


def test_keda_authentication_parameters_are_checked():
    so, auth = first("ScaledObject"), first("TriggerAuthentication")
    auth["spec"]["secretTargetRef"][0]["parameter"] = "passwd"
    docs = [so, auth]
    assert any("passwd" in v for v in violations(so, SCHEMAS, docs))
    assert any("username and password" in v for v in violations(so, SCHEMAS, docs))


def test_a_storage_size_must_be_a_quantity():
    pool = first("KafkaNodePool")
    pool["spec"]["storage"]["volumes"][0]["size"] = "100 GB"
    refused(pool, by_schema=False)


# --- Prometheus Operator ---------------------------------------------------------------------

RULE = {
    "apiVersion": "monitoring.coreos.com/v1",
    "kind": "PrometheusRule",
    "metadata": {"name": "kappa", "labels": {"release": "prometheus"}},
    "spec": {
        "groups": [
            {
                "name": "kappa",
                "rules": [{"alert": "KappaDown", "expr": "up == 0", "for": "5m", "labels": {"severity": "page"}, "annotations": {"summary": "down"}}],
            }
        ]
    },
}
MONITOR = {
    "apiVersion": "monitoring.coreos.com/v1",
    "kind": "ServiceMonitor",
    "metadata": {"name": "kappa"},
    "spec": {
        "selector": {"matchLabels": {"app.kubernetes.io/part-of": "kappa-exchange"}},
        "endpoints": [{"port": "ops", "path": "/metrics", "interval": "15s"}],
    },
}


def test_prometheus_operator_schemas():
    for doc, breaks in (
        (RULE, [lambda d: d["spec"]["groups"][0]["rules"][0].update(expresion="up"), lambda d: d["spec"]["groups"][0]["rules"][0].update(**{"for": "5 minutes"})]),
        (MONITOR, [lambda d: d["spec"]["endpoints"][0].update(prot="ops"), lambda d: d["spec"].pop("selector")]),
    ):
        assert schema_only(doc) == [], doc["kind"]
        for change in breaks:
            bad = copy.deepcopy(doc)
            change(bad)
            assert schema_only(bad), (doc["kind"], bad)


def test_generated_schemas_name_their_source():
    for path in generate.generate():
        comment = json.loads(path.read_text())["$comment"]
        assert "Generated by k8s/schemas/generate.py" in comment and "commit" in comment, path
