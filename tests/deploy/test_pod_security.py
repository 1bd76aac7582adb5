"""Every job pod — the Deployments' and the pods the DAGs' KubernetesPodOperator tasks create —
passes Pod Security "restricted" and the project's hardening (read-only root filesystem, no
service account token), and writes only to volumes."""

import copy
import posixpath

import pytest
import yaml
from manifests import of_kind
from pod_security import hardening_violations, restricted_violations, writable_mounts
from rendering import RUNS, pod
from test_manifests import kubernetes_validate


def deployment_pods():
    return [(d["metadata"]["name"], d["spec"]["template"]["spec"]) for d in of_kind("Deployment")]


def dag_pods(dagbag, run):
    return [(f"{dag_id}.{t.task_id}", pod(t, run)["spec"]) for dag_id, dag in sorted(dagbag.dags.items()) for t in dag.tasks]


def under(path, mount):
    return path == mount or path.startswith(mount.rstrip("/") + "/")


def test_deployments_meet_pod_security_restricted():
    for name, spec in deployment_pods():
        assert restricted_violations(spec) == [], name
        assert hardening_violations(spec) == [], name


@pytest.mark.parametrize("run", [RUNS[0], RUNS[2]], ids=lambda r: r.label)
def test_dag_pods_meet_pod_security_restricted(dagbag, run):
    """The pods as KubernetesPodOperator builds them (build_pod_request_obj) from rendered tasks."""
    pods = dag_pods(dagbag, run)
    assert pods
    for name, spec in pods:
        assert restricted_violations(spec) == [], name
        assert hardening_violations(spec) == [], name
        # The same user as the image and the Deployments.
        assert spec["securityContext"]["runAsUser"] == 10001 and spec["securityContext"]["runAsGroup"] == 10001


@pytest.mark.parametrize("run", [RUNS[0], RUNS[2]], ids=lambda r: r.label)
def test_pods_write_only_to_volumes(dagbag, run):
    """With a read-only root filesystem, whatever a job writes must be on a volume: /tmp an
    emptyDir (as in the Deployments), the Parquet output under a writable mount of the reports
    PersistentVolumeClaim, fix-gateway's journal (--state-dir) on its own claim."""
    for name, spec in deployment_pods() + dag_pods(dagbag, run):
        (c,) = spec["containers"]
        writable = writable_mounts(spec, c)
        assert "emptyDir" in writable.get("/tmp", {}), f"{name}: /tmp is not an emptyDir"
        args = [str(a) for a in c.get("args") or []]
        for flag in ("--parquet-dir", "--state-dir"):
            if flag in args:
                path = posixpath.normpath(args[args.index(flag) + 1])
                mounts = [m for m in writable if m != "/tmp" and under(path, m)]
                assert mounts, f"{name}: {path} is on no writable volume ({sorted(writable)})"
                assert "persistentVolumeClaim" in writable[mounts[0]], (name, path)


def test_dag_pods_pass_kubernetes_validate_strict(dagbag, tmp_path):
    pods = [pod(t, RUNS[2]) for dag in dagbag.dags.values() for t in dag.tasks]
    (tmp_path / "pods.yaml").write_text(yaml.safe_dump_all(pods))
    run = kubernetes_validate(tmp_path / "pods.yaml")
    assert run.returncode == 0, run.stdout + run.stderr
    assert (run.stdout + run.stderr).count(" passed for resource ") == len(pods), run.stdout + run.stderr


def test_the_check_catches_what_restricted_forbids():
    (_, spec) = deployment_pods()[0]
    assert restricted_violations(spec) == []

    def broken(change):
        s = copy.deepcopy(spec)
        change(s, s["containers"][0].setdefault("securityContext", {}))
        return restricted_violations(s) + hardening_violations(s)

    for change in (
        lambda s, c: s["securityContext"].pop("seccompProfile"),
        lambda s, c: c.update(seccompProfile={"type": "Unconfined"}),
        lambda s, c: s["securityContext"].pop("runAsNonRoot"),
        lambda s, c: c.update(runAsUser=0),
        lambda s, c: c.pop("allowPrivilegeEscalation"),
        lambda s, c: c.update(capabilities={"drop": ["NET_RAW"]}),
        lambda s, c: c.update(capabilities={"drop": ["ALL"], "add": ["SYS_ADMIN"]}),
        lambda s, c: c.update(privileged=True),
        lambda s, c: c.pop("readOnlyRootFilesystem"),
        lambda s, c: s.pop("automountServiceAccountToken"),
        lambda s, c: s.update(hostNetwork=True),
        lambda s, c: s["volumes"].append({"name": "host", "hostPath": {"path": "/"}}),
        lambda s, c: s["containers"][0]["ports"].append({"containerPort": 80, "hostPort": 80}),
    ):
        assert broken(change), change
