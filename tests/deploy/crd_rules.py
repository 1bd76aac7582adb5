"""Rules the operators (and Kafka) enforce at run time that their CRDs do not express, checked on
top of the schemas generated from the CRDs (k8s/schemas/generate.py) — kept here, apart, so the
generated schemas stay exactly what upstream publishes. A manifest that breaks one of these is
accepted by `kubectl apply` and fails later, in the operator's reconciliation (a KafkaTopic stuck
NotReady, a ScaledObject whose scaler errors) or, worse, is silently ignored.

Each rule names its source. `errors(doc, docs)` returns what a custom resource breaks."""

from __future__ import annotations

import re

# --- Kubernetes quantities ---------------------------------------------------------------------
#: k8s.io/apimachinery/pkg/api/resource Quantity, as the CRDs' resources.requests/limits patterns
#: have it. Strimzi's storage `size` is a plain string in its CRD, but becomes the PVC's
#: spec.resources.requests.storage (a Quantity): a bad size fails the PVC, not the apply.
QUANTITY = re.compile(
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)


def storage_errors(storage: dict, where: str) -> list[str]:
    bad = []
    for i, volume in enumerate(storage.get("volumes") or [storage]):
        size = volume.get("size")
        if volume.get("type") == "persistent-claim" and not (isinstance(size, str) and QUANTITY.match(size)):
            bad.append(f"{where}.volumes[{i}].size {size!r} is not a Kubernetes quantity")
    return bad


# --- Kafka topic configuration -----------------------------------------------------------------
#: Kafka 4.1's topic-level configurations: org.apache.kafka.storage.internals.log.LogConfig
#: (kafka-storage 4.1.0, its `CONFIG` definitions): name -> (type, minimum or allowed values).
#: Any other name is refused (LogConfig.validateNames: "Unknown topic config name"), and so is a
#: value out of range — e.g. segment.bytes below 1 MiB since Kafka 4.0 (KIP-1030; it was 14
#: bytes before). The Strimzi Topic Operator passes `spec.config` to Kafka as is.
INT32, INT64 = (-(2**31), 2**31 - 1), (-(2**63), 2**63 - 1)
KAFKA_TOPIC_CONFIGS = {
    "segment.bytes": ("int", 1024 * 1024),
    "segment.ms": ("long", 1),
    "segment.jitter.ms": ("long", 0),
    "segment.index.bytes": ("int", 4),
    "flush.messages": ("long", 1),
    "flush.ms": ("long", 0),
    "retention.bytes": ("long", None),
    "retention.ms": ("long", -1),
    "max.message.bytes": ("int", 0),
    "index.interval.bytes": ("int", 0),
    "delete.retention.ms": ("long", 0),
    "min.compaction.lag.ms": ("long", 0),
    "max.compaction.lag.ms": ("long", 1),
    "file.delete.delay.ms": ("long", 0),
    "min.cleanable.dirty.ratio": ("double", (0, 1)),
    "cleanup.policy": ("list", {"compact", "delete"}),
    "unclean.leader.election.enable": ("boolean", None),
    "min.insync.replicas": ("int", 1),
    "compression.type": ("string", {"uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"}),
    # The levels' ranges depend on the codec (CompressionType.*.levelValidator): type only here.
    "compression.gzip.level": ("int", None),
    "compression.lz4.level": ("int", None),
    "compression.zstd.level": ("int", None),
    "preallocate": ("boolean", None),
    "message.timestamp.type": ("string", {"CreateTime", "LogAppendTime"}),
    "message.timestamp.before.max.ms": ("long", 0),
    "message.timestamp.after.max.ms": ("long", 0),
    "leader.replication.throttled.replicas": ("list", None),
    "follower.replication.throttled.replicas": ("list", None),
    "remote.storage.enable": ("boolean", None),
    "local.retention.ms": ("long", -2),
    "local.retention.bytes": ("long", -2),
    "remote.log.copy.disable": ("boolean", None),
    "remote.log.delete.on.disable": ("boolean", None),
}


def _number(value, parse):
    """A config value as Kafka parses it (Strimzi sends it as a string), or None."""
    if isinstance(value, bool):
        return None
    try:
        return parse(str(value).strip())
    except ValueError:
        return None


def topic_config_errors(config: dict, where: str) -> list[str]:
    bad = []
    for name, value in config.items():
        if name not in KAFKA_TOPIC_CONFIGS:
            bad.append(f"{where}: unknown topic config {name!r} (Kafka refuses it)")
            continue
        kind, rule = KAFKA_TOPIC_CONFIGS[name]
        if kind in ("int", "long"):
            n = _number(value, int)
            lo, hi = INT32 if kind == "int" else INT64
            if n is None or not lo <= n <= hi:
                bad.append(f"{where}: {name} {value!r} is not a {kind}")
            elif rule is not None and n < rule:
                bad.append(f"{where}: {name} {value!r} is below its minimum {rule}")
        elif kind == "double":
            x = _number(value, float)
            if x is None or not rule[0] <= x <= rule[1]:
                bad.append(f"{where}: {name} {value!r} is not a number in [{rule[0]}, {rule[1]}]")
        elif kind == "boolean":
            if not (isinstance(value, bool) or str(value).strip().lower() in ("true", "false")):
                bad.append(f"{where}: {name} {value!r} is not a boolean")
        elif kind == "string":
            if not isinstance(value, str) or (rule and value.strip() not in rule):
                bad.append(f"{where}: {name} {value!r} is not one of {sorted(rule)}")
        elif kind == "list":
            items = value if isinstance(value, list) else str(value).split(",")
            items = [str(i).strip() for i in items]
            if rule and (not items or set(items) - rule):
                bad.append(f"{where}: {name} {value!r} is not a list of {sorted(rule)}")
    lag = {k: _number(config.get(k), int) for k in ("min.compaction.lag.ms", "max.compaction.lag.ms")}
    if None not in lag.values() and lag["min.compaction.lag.ms"] > lag["max.compaction.lag.ms"]:
        bad.append(f"{where}: min.compaction.lag.ms > max.compaction.lag.ms (LogConfig.validateValues)")
    return bad


# --- KEDA's Kafka scaler -----------------------------------------------------------------------
#: The trigger metadata keys the kafka scaler reads (pkg/scalers/kafka_scaler.go): those read by
#: both KEDA 2.10.1 (the oldest version k8s/README.md supports: `sasl`/`tls` in trigger metadata
#: came in 2.10) and 2.20.2 (the CRDs' version). KEDA ignores any other key without a word
#: (unless KEDA_CHECK_UNEXPECTED_SCALERS_PARAMS=enabled), so `consumerGrup` would silently mean no
#: consumer group and `lagThresold` the default threshold of 10.
BOOL = {"true", "false", "True", "False", "TRUE", "FALSE", "t", "f", "T", "F", "1", "0"}  # Go's ParseBool
KEDA_KAFKA_METADATA = {
    "bootstrapServers": re.compile(r"^[^,\s]+:[0-9]+(,[^,\s]+:[0-9]+)*$"),
    "bootstrapServersFromEnv": re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$"),
    "consumerGroup": re.compile(r"^\S+$"),
    "consumerGroupFromEnv": re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$"),
    "topic": re.compile(r"^[A-Za-z0-9._-]+$"),
    "topicFromEnv": re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$"),
    "partitionLimitation": re.compile(r"^\s*[0-9]+(\s*-\s*[0-9]+)?(\s*,\s*[0-9]+(\s*-\s*[0-9]+)?)*\s*$"),
    # kafkaMetadata.Validate: lagThreshold must be positive, activationLagThreshold non-negative.
    "lagThreshold": re.compile(r"^[1-9][0-9]*$"),
    "activationLagThreshold": re.compile(r"^[0-9]+$"),
    "offsetResetPolicy": {"latest", "earliest"},
    "allowIdleConsumers": BOOL,
    "excludePersistentLag": BOOL,
    "scaleToZeroOnInvalidOffset": BOOL,
    "version": re.compile(r"^[0-9]+(\.[0-9]+){1,3}$"),
    "tls": {"enable", "disable"},
    # 2.10.1 accepts these four (2.20 adds none and gssapi).
    "sasl": {"plaintext", "scram_sha256", "scram_sha512", "oauthbearer"},
}
#: The TriggerAuthentication parameters the kafka scaler reads (authParams in both versions).
KEDA_KAFKA_AUTH_PARAMS = {
    "username",
    "password",
    "ca",
    "cert",
    "key",
    "keyPassword",
    "sasl",
    "tls",
    "scopes",
    "oauthTokenEndpointUri",
}


def keda_kafka_errors(trigger: dict, auth: dict | None, where: str) -> list[str]:
    bad = []
    meta = trigger.get("metadata") or {}
    for key, value in meta.items():
        rule = KEDA_KAFKA_METADATA.get(key)
        if rule is None:
            bad.append(f"{where}: kafka trigger metadata {key!r} is no key KEDA's kafka scaler reads")
        elif isinstance(rule, set) and value not in rule:
            bad.append(f"{where}: {key} {value!r} is not one of {sorted(rule)}")
        elif isinstance(rule, re.Pattern) and not (isinstance(value, str) and rule.match(value)):
            bad.append(f"{where}: {key} {value!r} does not match {rule.pattern}")
    for key in ("bootstrapServers", "consumerGroup"):
        if key not in meta and key + "FromEnv" not in meta:
            bad.append(f"{where}: kafka trigger without {key}")
    params = set()
    if auth is not None:
        spec = auth.get("spec") or {}
        for source in ("secretTargetRef", "env"):
            params |= {p["parameter"] for p in spec.get(source) or []}
        for p in sorted(params - KEDA_KAFKA_AUTH_PARAMS):
            bad.append(f"{where}: TriggerAuthentication parameter {p!r} is none the kafka scaler reads")
    if meta.get("sasl") or "sasl" in params:
        # SASL needs the user and password (kafka_scaler.go: "no username given").
        if not {"username", "password"} <= params:
            bad.append(f"{where}: sasl without username and password in the TriggerAuthentication")
    return bad


def scaled_object_errors(so: dict, docs: list[dict], where: str) -> list[str]:
    spec = so.get("spec") or {}
    bad = []
    # The CRD's CEL rule (x-kubernetes-validations, which JSON Schema cannot run): minReplicaCount
    # must be <= maxReplicaCount (default 100).
    if spec.get("minReplicaCount", 0) > spec.get("maxReplicaCount", 100):
        bad.append(f"{where}: minReplicaCount must be less than or equal to maxReplicaCount")
    auths = {
        d["metadata"]["name"]: d
        for d in docs
        if d.get("kind") == "TriggerAuthentication" and d["metadata"].get("namespace") == so["metadata"].get("namespace")
    }
    for i, trigger in enumerate(spec.get("triggers") or []):
        if trigger.get("type") == "kafka":
            ref = (trigger.get("authenticationRef") or {}).get("name")
            if ref is not None and ref not in auths:
                bad.append(f"{where}.triggers[{i}]: no TriggerAuthentication {ref}")
            bad += keda_kafka_errors(trigger, auths.get(ref), f"{where}.triggers[{i}]")
    return bad


def errors(doc: dict, docs: list[dict]) -> list[str]:
    """What custom resource `doc` (among all manifests `docs`) breaks of the rules above."""
    kind, name = doc.get("kind"), (doc.get("metadata") or {}).get("name")
    where = f"{kind} {name}"
    spec = doc.get("spec") or {}
    if kind == "KafkaTopic":
        return topic_config_errors(spec.get("config") or {}, where)
    if kind == "KafkaNodePool":
        return storage_errors(spec.get("storage") or {}, f"{where}.storage")
    if kind == "ScaledObject":
        return scaled_object_errors(doc, docs, where)
    return []
