"""Least privilege and network isolation of the deployment: every job (Deployment or Airflow DAG)
has its own Kafka user, KEDA scales a job with that job's user, the NetworkPolicies deny
everything but the flows each pod needs (without cutting Strimzi's own traffic), the public ports
(market-view's API, fix-gateway's FIX sessions) are reached from the ingress controller only and the
ops ports from monitoring only, and the load test runs on its own prefixed topics."""

import re

from manifests import container, env_of, of_kind
from pods import pod_env, pod_labels
from rendering import RUNS, rendered_fields

USERS = {u["metadata"]["name"]: u for u in of_kind("KafkaUser")}
#: The Kafka user of each DAG's pods (one per DAG, shared by its tasks).
DAG_USERS = {
    "kappa_analytics_replay": "kappa-replay",
    "kappa_daily_report": "kappa-report",
    "kappa_load_test": "kappa-load-test",
}
CONFIG = of_kind("ConfigMap")[0]["data"]
OPS_PORT = int(CONFIG["KAPPA_OPS_BIND"].rsplit(":", 1)[1])
POLICIES = of_kind("NetworkPolicy")
DEPLOYMENTS = {d["metadata"]["name"] for d in of_kind("Deployment")}
(KAFKA,) = of_kind("Kafka")
CLUSTER = KAFKA["metadata"]["name"]
(LISTENER,) = KAFKA["spec"]["kafka"]["listeners"]
#: Namespaces allowed in: the ingress controller's (the public API) and Prometheus' (ops port).
INGRESS_NAMESPACE = "ingress-nginx"
MONITORING_NAMESPACE = "monitoring"
#: Strimzi's fixed internal listeners: KRaft control plane and replication (inter-broker).
CONTROL_PLANE_PORT, REPLICATION_PORT = 9090, 9091


def strimzi_pods():
    """The labels the Strimzi Cluster Operator gives the pods of Kafka `CLUSTER` (its
    Labels.generateDefaultLabels and KafkaPool): one broker per node pool, the entity operator."""
    common = {
        "strimzi.io/cluster": CLUSTER,
        "strimzi.io/kind": "Kafka",
        "app.kubernetes.io/part-of": f"strimzi-{CLUSTER}",
    }
    brokers = {
        f"broker of pool {p['metadata']['name']}": {
            **common,
            "strimzi.io/name": f"{CLUSTER}-kafka",
            "strimzi.io/pool-name": p["metadata"]["name"],
            "app.kubernetes.io/name": "kafka",
        }
        for p in of_kind("KafkaNodePool")
    }
    entity_operator = {
        **common,
        "strimzi.io/name": f"{CLUSTER}-entity-operator",
        "app.kubernetes.io/name": "entity-operator",
    }
    return brokers, entity_operator


BROKERS, ENTITY_OPERATOR = strimzi_pods()


def job_pods(dagbag):
    """(name, pod labels, pod env) of every job pod: the Deployments' and the DAG tasks'."""
    out = []
    for d in of_kind("Deployment"):
        out.append((d["metadata"]["name"], d["spec"]["template"]["metadata"]["labels"], env_of(container(d))))
    for dag_id, dag in sorted(dagbag.dags.items()):
        for t in dag.tasks:
            out.append((f"{dag_id}.{t.task_id}", pod_labels(t), pod_env(t)))
    return out


# --- label selectors and NetworkPolicy rules -------------------------------------------------


def matches(selector, labels) -> bool:
    """Whether a label selector (matchLabels and matchExpressions) selects `labels`."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        present = e["key"] in labels
        value = labels.get(e["key"])
        ok = {
            "In": present and value in e.get("values", []),
            "NotIn": not present or value not in e.get("values", []),
            "Exists": present,
            "DoesNotExist": not present,
        }[e["operator"]]
        if not ok:
            return False
    return True


def policy_types(p):
    spec = p["spec"]
    return set(spec.get("policyTypes") or (["Ingress"] + (["Egress"] if "egress" in spec else [])))


def selecting(labels, direction):
    return [p for p in POLICIES if direction in policy_types(p) and matches(p["spec"]["podSelector"], labels)]


def rules(labels, direction):
    key = {"Ingress": "ingress", "Egress": "egress"}[direction]
    return [r for p in selecting(labels, direction) for r in p["spec"].get(key) or []]


def ports(rule):
    """The (protocol, port) pairs a rule allows; None for every port."""
    if not rule.get("ports"):
        return None
    return {(p.get("protocol", "TCP"), p["port"]) for p in rule["ports"]}


def peers(rule, direction):
    return rule.get("to" if direction == "Egress" else "from") or []


def namespace_of(peer):
    """The namespace a namespaceSelector-only peer names by kubernetes.io/metadata.name, else None."""
    ns = peer.get("namespaceSelector")
    if ns is None or "podSelector" in peer or "ipBlock" in peer or ns.get("matchExpressions"):
        return None
    return (ns.get("matchLabels") or {}).get("kubernetes.io/metadata.name")


def in_namespace_peer_selects(peer, labels):
    """Whether a peer selects a pod with `labels` in the policy's own namespace."""
    return set(peer) == {"podSelector"} and matches(peer["podSelector"], labels)


def is_dns(rule):
    to = peers(rule, "Egress")
    return (
        bool(to)
        and all(
            set(p) == {"namespaceSelector", "podSelector"}
            and p["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}
            and p["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
            for p in to
        )
        and ports(rule) == {("UDP", 53), ("TCP", 53)}
    )


def is_kafka_listener(rule, labels_of_own_kind):
    """An egress rule to the brokers' client listener only: every peer selects broker pods of this
    namespace and no pod of the selecting kind (no job reaches another job this way)."""
    to = peers(rule, "Egress")
    return (
        bool(to)
        and all(
            set(p) == {"podSelector"}
            and all(matches(p["podSelector"], b) for b in BROKERS.values())
            and not matches(p["podSelector"], ENTITY_OPERATOR)
            and not any(matches(p["podSelector"], own) for own in labels_of_own_kind)
            for p in to
        )
        and ports(rule) == {("TCP", LISTENER["port"])}
    )


# --- Kafka identities ------------------------------------------------------------------------


def kafka_identity(env, where):
    """The Kafka user a pod runs as; its password must come from that user's Secret."""
    assert "valueFrom" not in env["KAFKA_SASL_USERNAME"], where
    user = env["KAFKA_SASL_USERNAME"]["value"]
    ref = env["KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
    # The User Operator writes the password of KafkaUser X to Secret X, key `password`.
    assert (ref["name"], ref["key"]) == (user, "password"), where
    assert user in USERS, f"{where}: no KafkaUser {user} in k8s/users.yaml ({sorted(USERS)})"
    assert USERS[user]["spec"]["authentication"]["type"] == "scram-sha-512", user
    return user


def test_every_job_has_its_own_kafka_user(dagbag):
    identities = {}
    for d in of_kind("Deployment"):
        name = d["metadata"]["name"]
        user = kafka_identity(env_of(container(d)), name)
        assert user == f"kappa-{name}", name
        identities[name] = {user}
    for dag_id, dag in dagbag.dags.items():
        identities[dag_id] = {kafka_identity(pod_env(t), f"{dag_id}.{t.task_id}") for t in dag.tasks}
        assert identities[dag_id] == {DAG_USERS[dag_id]}, dag_id
    # No two jobs share a user (a DAG's tasks are one job).
    every = [u for us in identities.values() for u in us]
    assert len(every) == len(set(every)), identities
    # The shared user is gone, and the ConfigMap every pod reads names no user.
    assert "kappa-app" not in USERS
    settings = dict(kv.split("=", 1) for kv in CONFIG["KAFKA_CONFIG"].split(";"))
    assert not {"sasl.username", "sasl.password", "sasl.jaas.config"} & set(settings)


def test_keda_authenticates_as_the_scaled_job():
    auths = {a["metadata"]["name"]: a for a in of_kind("TriggerAuthentication")}
    used = []
    for so in of_kind("ScaledObject"):
        target = so["spec"]["scaleTargetRef"]["name"]
        (d,) = [d for d in of_kind("Deployment") if d["metadata"]["name"] == target]
        c = container(d)
        env = env_of(c)
        user = kafka_identity(env, target)
        for trigger in so["spec"]["triggers"]:
            ref = trigger["authenticationRef"]["name"]
            used.append(ref)
            spec = auths[ref]["spec"]
            params = {}
            for e in spec.get("env", []):
                assert e.get("containerName") == c["name"], (ref, e)
                params[e["parameter"]] = env[e["name"]]["value"]
            for s in spec.get("secretTargetRef", []):
                params[s["parameter"]] = ("secret", s["name"], s["key"])
            assert params["username"] == user, ref
            assert params["password"] == ("secret", user, "password"), ref
    # One TriggerAuthentication per scaled job: none shared, none unused.
    assert sorted(used) == sorted(auths)


# --- NetworkPolicies -------------------------------------------------------------------------


def test_a_default_deny_covers_every_pod_both_ways():
    deny = [
        p
        for p in POLICIES
        if not p["spec"]["podSelector"]  # {}: every pod of the namespace
        and policy_types(p) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert deny, "no default-deny NetworkPolicy for both directions"


def test_job_pods_reach_dns_and_the_kafka_listener_and_nothing_else(dagbag):
    pods = job_pods(dagbag)
    assert any(labels.get("app.kubernetes.io/component") == "batch" for _, labels, _ in pods)
    own = [labels for _, labels, _ in pods]
    for name, labels, _ in pods:
        egress = rules(labels, "Egress")
        assert any(is_dns(r) for r in egress), f"{name}: no DNS"
        assert any(is_kafka_listener(r, own) for r in egress), f"{name}: cannot reach Kafka"
        other = [r for r in egress if not (is_dns(r) or is_kafka_listener(r, own))]
        assert not other, f"{name}: egress beyond DNS and Kafka: {other}"


def test_the_kafka_listener_admits_job_pods_and_keda_only(dagbag):
    assert CONFIG["KAFKA_BROKERS"].endswith(":%d" % LISTENER["port"])
    allowed = LISTENER.get("networkPolicyPeers")
    assert allowed, "without networkPolicyPeers Strimzi opens the listener to every pod of the cluster"
    for name, labels, _ in job_pods(dagbag):
        assert any(in_namespace_peer_selects(p, labels) for p in allowed), name
    for p in allowed:
        if set(p) == {"podSelector"}:
            assert p["podSelector"].get("matchLabels"), "a pod selector selecting every pod"
            assert not matches(p["podSelector"], ENTITY_OPERATOR)
        else:
            assert namespace_of(p) == "keda", p


def test_ingress_only_public_port_from_the_ingress_and_ops_port_from_monitoring(dagbag):
    public = {}  # Deployment name -> the container ports its Service exposes
    for svc in of_kind("Service"):
        for d in of_kind("Deployment"):
            if svc["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items():
                named = {p["name"]: p["containerPort"] for p in container(d)["ports"]}
                for p in svc["spec"]["ports"]:
                    t = p.get("targetPort", p["port"])
                    public.setdefault(d["metadata"]["name"], set()).add(named.get(t, t))
    assert public == {"market-view": {8080}, "fix-gateway": {9878}}
    for name, labels, _ in job_pods(dagbag):
        ingress = rules(labels, "Ingress")
        for r in ingress:
            assert r.get("from") and r.get("ports"), f"{name}: ingress open to any peer or any port: {r}"
            namespaces = {namespace_of(p) for p in r["from"]}
            allowed = {p for _, p in ports(r)}
            assert {proto for proto, _ in ports(r)} == {"TCP"}, name
            if allowed == {OPS_PORT}:
                assert namespaces == {MONITORING_NAMESPACE}, f"{name}: ops port from {namespaces}"
            else:
                assert allowed <= public.get(name, set()), f"{name}: ingress on {allowed}"
                assert namespaces == {INGRESS_NAMESPACE}, f"{name}: public port from {namespaces}"
        if name in public:
            assert any(
                {p for _, p in ports(r)} == public[name] and {namespace_of(p) for p in r["from"]} == {INGRESS_NAMESPACE}
                for r in ingress
            ), f"{name}: the ingress controller cannot reach it"
        if name in DEPLOYMENTS:
            assert any(
                ports(r) == {("TCP", OPS_PORT)} and {namespace_of(p) for p in r["from"]} == {MONITORING_NAMESPACE}
                for r in ingress
            ), f"{name}: Prometheus cannot scrape it"


def test_strimzi_pods_keep_their_own_traffic(dagbag):
    """The default deny also selects Strimzi's pods. Strimzi creates their ingress policies itself
    (from kafka.yaml), but no egress policy: ours must let brokers reach each other on the control
    plane and replication ports, and the entity operator reach the brokers and the API server."""
    for pool, labels in BROKERS.items():
        egress = rules(labels, "Egress")
        assert any(is_dns(r) for r in egress), pool
        for port in (CONTROL_PLANE_PORT, REPLICATION_PORT):
            for other, other_labels in BROKERS.items():
                assert any(
                    (ports(r) is None or ("TCP", port) in ports(r))
                    and (
                        not peers(r, "Egress")
                        or any(in_namespace_peer_selects(p, other_labels) for p in peers(r, "Egress"))
                    )
                    for r in egress
                ), f"{pool}: no egress to the {other} on {port}"
    assert any(r == {} for r in rules(ENTITY_OPERATOR, "Egress")), "entity operator: no egress (API server, brokers)"
    # Those exemptions select Strimzi's pods only, never a job pod.
    strimzi = [*BROKERS.values(), ENTITY_OPERATOR]
    for p in POLICIES:
        if p["spec"]["podSelector"] and any(matches(p["spec"]["podSelector"], s) for s in strimzi):
            for name, labels, _ in job_pods(dagbag):
                assert not matches(p["spec"]["podSelector"], labels), (p["metadata"]["name"], name)


# --- load test -------------------------------------------------------------------------------


def test_the_load_test_writes_its_own_prefixed_topics_only(dagbag):
    dag = dagbag.dags["kappa_load_test"]
    prefixes = set()
    for task in dag.tasks:
        env = pod_env(task)
        prefix = env["KAFKA_TOPIC_PREFIX"]["value"]
        assert prefix == "loadtest.", task.task_id
        prefixes.add(prefix)
        args = rendered_fields(task, RUNS[2])["arguments"]
        values = args + [e["value"] for e in env.values() if e.get("value")]
        assert any("loadtest." in v for v in values)
        bare = [v for v in values if re.search(r"(?<![\w.-])orders(?![\w-])", v)]
        assert not bare, f"{task.task_id}: names the production topic: {bare}"
        assert "--topic-prefix" not in args and "--output-prefix" not in args, task.task_id
        # Never the live match maker's transactional id or static membership.
        assert not {"KAPPA_TRANSACTIONAL_ID", "KAPPA_STATIC_MEMBERSHIP"} & set(env), task.task_id
    (matcher,) = [t for t in dag.tasks if t.cmds == ["match-maker"]]
    assert "--idle-exit-ms" in matcher.arguments, "the load test's match maker must exit when the flow stops"
    assert not matcher.upstream_task_ids, "the match maker runs alongside the generator"
    topics = {t["metadata"]["name"] for t in of_kind("KafkaTopic")}
    for prefix in prefixes:
        needed = {"orders", "trades", "order-events", "book", "rejects", "match-maker-snapshots"}
        assert {prefix + t for t in needed} <= topics, sorted({prefix + t for t in needed} - topics)
