"""fix-gateway (k8s/fix-gateway.yaml): a single writer of the journal, on a persistent volume; the
traders' API keys and the order-id key from market-view's Secrets; the FIX port in the Service
(the ops port in none, checked for every Service by test_manifests.py); and a memory limit that
holds every bound at once, with the costs per entry that budget uses measured here on the real
binary (a journal at the Deployment's bounds, replayed by target/debug/fix-gateway).

The rest applies to it as to every Deployment: its own KafkaUser, network policies, pod
security, probes on the ops port, its command line and environment parsed by the binary
(test_least_privilege.py, test_pod_security.py, test_manifests.py)."""

import json
import os
import re
import subprocess
import time

import fix_journal
from jobs import BIN_DIR
from kubernetes.utils.quantity import parse_quantity
from manifests import K8S, container, env_of, named, of_kind

NAME = "fix-gateway"
DEPLOYMENT = named("Deployment", NAME)
POD = DEPLOYMENT["spec"]["template"]["spec"]
C = container(DEPLOYMENT)
ARGS = [str(a) for a in C["args"]]
MIB = 1 << 20

#: The gateway's state per entry, (resident bytes, bytes in the journal's snapshot): upper bounds of
#: what test_the_costs_per_entry_hold_for_the_real_binary measures (64-character ClOrdIDs, 17-field
#: fill reports, open orders whose `orders` record the broker has not acknowledged yet).
KEPT_MESSAGE = (1300, 430)  # --resend-window per session
CL_ORD_ID = (160, 90)  # --max-orders-per-session per session
OPEN_ORDER = (1100, 500)  # at most one per ClOrdID
#: The process without state (measured: an empty journal), and what it holds besides its state
#: once running: Kafka (librdkafka's default order-events prefetch of 64 MiB; the order producer's
#: 16 MiB buffer, src/fix/server.rs), per connection up to 4 096 queued messages of ≤ 512 B, the
#: core's queue of 1 024 inputs (each ≤ 512 fields, codec::MAX_FIELDS: ≈ 20 kB decoded), and one
#: journal batch (at most 1 024 inputs' records).
BASE = 16 * MIB
KAFKA = 80 * MIB
PER_CONNECTION = 4096 * 512
CORE_QUEUE = 1024 * 20 * 1024
BATCH = 2 * MIB


def arg(flag, args=ARGS):
    return args[args.index(flag) + 1]


def mount_of(path, c=C, spec=POD):
    """The mount `path` is on, and its volume."""
    volumes = {v["name"]: v for v in spec["volumes"]}
    (m,) = [m for m in c["volumeMounts"] if path == m["mountPath"] or path.startswith(m["mountPath"].rstrip("/") + "/")]
    return m, volumes[m["name"]]


def per_session(i, args=ARGS):
    """One session at every cap: resident (i = 0) or in the snapshot (i = 1), in bytes."""
    kept, ids = int(arg("--resend-window", args)), int(arg("--max-orders-per-session", args))
    return kept * KEPT_MESSAGE[i] + ids * CL_ORD_ID[i] + ids * OPEN_ORDER[i]


def budget(args=ARGS):
    """The worst case: every session (--max-sessions, one per FIX trader) at every cap.
    Compacting the journal holds the state and the snapshot twice (serialized from the state, then
    framed); at start the journal read whole (the snapshot and at most --compact-bytes of growth,
    and one batch) is held too, once running Kafka and the connections' queues instead."""
    sessions = int(arg("--max-sessions", args))
    state, snapshot = sessions * per_session(0, args), sessions * per_session(1, args)
    compaction = state + 2 * snapshot
    at_start = BASE + compaction + snapshot + int(arg("--compact-bytes", args)) + BATCH
    running = BASE + compaction + KAFKA + int(arg("--max-connections", args)) * PER_CONNECTION + CORE_QUEUE
    return {"state": state, "snapshot": snapshot, "peak": max(at_start, running)}


def test_one_replica_recreated_with_the_journal_on_a_persistent_volume():
    assert DEPLOYMENT["spec"]["replicas"] == 1
    # Recreate: the old pod is gone before the new one opens the journal.
    assert DEPLOYMENT["spec"]["strategy"] == {"type": "Recreate"}
    assert not [s for s in of_kind("ScaledObject") if s["spec"]["scaleTargetRef"]["name"] == NAME]
    mount, volume = mount_of(arg("--state-dir"))
    assert "persistentVolumeClaim" in volume and not mount.get("readOnly"), f"the journal is on {volume}"
    claim = named("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
    assert set(claim["spec"]["accessModes"]) <= {"ReadWriteOnce", "ReadWriteOncePod"}, "one node mounts it"
    # The journal (≤ --compact-bytes) and, while compacting, the new snapshot beside it.
    size = int(parse_quantity(claim["spec"]["resources"]["requests"]["storage"]))
    assert size >= int(arg("--compact-bytes")) + budget()["snapshot"]
    # Written by the image's user (10001): the volume's group is the pod's.
    ctx = POD["securityContext"]
    assert ctx["fsGroup"] == ctx["runAsGroup"]
    # Every journal batch synced before what it accounts for leaves the pod.
    assert "--no-sync" not in ARGS


def test_traders_keys_and_order_ids_are_market_views():
    mv = named("Deployment", "market-view")
    mv_c = container(mv)
    mv_args = [str(a) for a in mv_c["args"]]
    keys = arg("--api-keys")
    mount, volume = mount_of(keys)
    mv_mount, mv_volume = mount_of(arg("--api-keys", mv_args), mv_c, mv["spec"]["template"]["spec"])
    assert mount["readOnly"] is True
    assert volume["secret"] == mv_volume["secret"] and volume["secret"]["secretName"] == "kappa-api-keys"
    assert keys.removeprefix(mount["mountPath"] + "/") in {i["path"] for i in volume["secret"]["items"]}
    assert env_of(C)["KAPPA_ORDER_ID_KEY"]["valueFrom"] == env_of(mv_c)["KAPPA_ORDER_ID_KEY"]["valueFrom"]
    assert "--order-id-key" not in ARGS, "a secret on the command line"


def test_the_service_exposes_the_fix_port():
    ports = {p["name"]: p["containerPort"] for p in C["ports"]}
    assert arg("--bind") == f"0.0.0.0:{ports['fix']}"
    svc = named("Service", NAME)
    assert svc["spec"]["selector"].items() <= DEPLOYMENT["spec"]["template"]["metadata"]["labels"].items()
    assert [(p["name"], p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [("fix", ports["fix"], "fix")]


def test_the_memory_limit_holds_every_bound_at_once():
    limit = int(parse_quantity(C["resources"]["limits"]["memory"]))
    b = budget()
    assert b["peak"] <= 0.8 * limit, f"{b['peak'] / MIB:.0f} MiB at every cap, limit {limit / MIB:.0f} MiB"
    # Growth past the snapshot is what triggers compaction: bounded, and not zero.
    assert 0 < int(arg("--compact-bytes")) <= b["snapshot"] + 1024 * MIB
    # The budget written beside the limit names the Deployment's bounds and its limit.
    text = (K8S / "fix-gateway.yaml").read_text()
    comment = text[text.index("# Memory budget") : text.index("resources:", text.index("# Memory budget"))]
    comment = re.sub(r"(?<=\d) (?=\d{3}\b)", "", comment)  # 10 000 -> 10000
    for flag in ("--max-sessions", "--max-connections", "--resend-window", "--max-orders-per-session", "--compact-bytes", "--max-message"):
        m = re.search(rf"{flag} (\d+)( MiB)?", comment)
        assert m, f"the memory budget does not name {flag}"
        assert int(m.group(1)) * (MIB if m.group(2) else 1) == int(arg(flag)), flag
    (stated,) = re.findall(r"under the ([\d.]+) GiB limit", comment)
    assert float(stated) * 1024 * MIB == limit


def peak_rss(state_dir, *args):
    """The peak resident memory (VmHWM) of fix-gateway once it has replayed and compacted the
    journal of `state_dir`, and what its log says it replayed. No broker: it is stopped before it
    would need one."""
    exe = BIN_DIR / NAME
    assert exe.exists(), f"{exe} missing: build the binaries first (cargo build), or set KAPPA_BIN_DIR"
    log = state_dir.with_suffix(".log")
    cmd = [exe, "--log-json", "--state-dir", state_dir, "--brokers", "127.0.0.1:9", "--bind", "127.0.0.1:0", *args]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={"PATH": os.environ.get("PATH", "")})
    try:
        deadline = time.monotonic() + 120
        while "FIX journal replayed" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "fix-gateway did not replay its journal in 2 minutes"
            time.sleep(0.05)
        status = open(f"/proc/{proc.pid}/status").read()
    finally:
        proc.kill()
        proc.wait()
    (replayed,) = [json.loads(line)["fields"] for line in log.read_text().splitlines() if "FIX journal replayed" in line]
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) * 1024, replayed


def test_the_costs_per_entry_hold_for_the_real_binary(tmp_path):
    """Two sessions at the Deployment's caps, replayed: the peak above an empty journal's is at
    most what the budget counts for them (the journal read, the state and the snapshot twice), and
    not far below it (the constants are not stale)."""
    bounds = ["--resend-window", arg("--resend-window"), "--max-orders-per-session", arg("--max-orders-per-session")]
    kept, ids = int(arg("--resend-window")), int(arg("--max-orders-per-session"))
    empty, _ = peak_rss(tmp_path / "empty", *bounds)
    size = fix_journal.write(tmp_path / "full", sessions=2, kept=kept, cl_ord_ids=ids, open_orders=ids)
    full, replayed = peak_rss(tmp_path / "full", *bounds)
    assert (replayed["sessions"], replayed["open_orders"]) == (2, 2 * ids), (
        f"the gateway read {replayed} of the journal: tests/deploy/fix_journal.py no longer matches src/fix/state.rs"
    )
    assert size <= 2 * per_session(1), "the snapshot is larger than the budget counts"
    counted = size + 2 * per_session(0) + 2 * (2 * per_session(1))
    measured = full - empty
    assert measured <= counted, f"measured {measured / MIB:.1f} MiB, the budget counts {counted / MIB:.1f} MiB"
    assert measured >= 0.8 * counted, f"measured {measured / MIB:.1f} MiB, far below the {counted / MIB:.1f} MiB counted"
    assert empty <= BASE, f"{empty / MIB:.1f} MiB without state"
