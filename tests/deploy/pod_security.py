"""The Kubernetes Pod Security Standards, "restricted" profile (which includes "baseline"), as the
PodSecurity admission controller applies them to a pod spec (manifest form, camelCase): the
controls of https://kubernetes.io/docs/concepts/security/pod-security-standards/ (policy version
v1.31, the Kubernetes version the manifests are validated for). Plus this project's own
hardening, which the standard does not require: a read-only root filesystem and no service
account token (no job talks to the Kubernetes API)."""

#: Baseline: capabilities that may be added.
BASELINE_CAPABILITIES = {
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
}
#: Baseline: the "safe" sysctls.
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}
#: Restricted: the only volume types allowed.
RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
SELINUX_TYPES = {None, "", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}


def containers(spec):
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(key) or []:
            yield f"{key}[{c.get('name')}]", c


def restricted_violations(spec: dict) -> list[str]:
    """What in pod spec `spec` the restricted profile forbids (empty: admitted)."""
    bad = []
    pod_ctx = spec.get("securityContext") or {}
    # --- baseline
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            bad.append(f"{key}: true")
    if (pod_ctx.get("windowsOptions") or {}).get("hostProcess"):
        bad.append("pod windowsOptions.hostProcess")
    for name, c in containers(spec):
        ctx = c.get("securityContext") or {}
        if ctx.get("privileged"):
            bad.append(f"{name}: privileged")
        if (ctx.get("windowsOptions") or {}).get("hostProcess"):
            bad.append(f"{name}: windowsOptions.hostProcess")
        if ctx.get("procMount") not in (None, "Default"):
            bad.append(f"{name}: procMount {ctx['procMount']}")
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                bad.append(f"{name}: hostPort {p['hostPort']}")
    for where, ctx in [("pod", pod_ctx), *((n, c.get("securityContext") or {}) for n, c in containers(spec))]:
        se = ctx.get("seLinuxOptions") or {}
        if se.get("type") not in SELINUX_TYPES or se.get("user") or se.get("role"):
            bad.append(f"{where}: seLinuxOptions {se}")
        if (ctx.get("appArmorProfile") or {}).get("type") == "Unconfined":
            bad.append(f"{where}: appArmorProfile Unconfined")
    for s in pod_ctx.get("sysctls") or []:
        if s.get("name") not in SAFE_SYSCTLS:
            bad.append(f"unsafe sysctl {s.get('name')}")
    # --- restricted
    for v in spec.get("volumes") or []:
        kinds = set(v) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            bad.append(f"volume {v.get('name')}: type {sorted(kinds - RESTRICTED_VOLUMES)}")
    pod_non_root = pod_ctx.get("runAsNonRoot")
    pod_seccomp = (pod_ctx.get("seccompProfile") or {}).get("type")
    if pod_ctx.get("runAsUser") == 0:
        bad.append("pod runAsUser 0")
    if pod_seccomp not in (None, "RuntimeDefault", "Localhost"):
        bad.append(f"pod seccompProfile {pod_seccomp}")
    for name, c in containers(spec):
        ctx = c.get("securityContext") or {}
        if ctx.get("allowPrivilegeEscalation") is not False:
            bad.append(f"{name}: allowPrivilegeEscalation must be false")
        non_root = ctx.get("runAsNonRoot", pod_non_root)
        if non_root is not True:
            bad.append(f"{name}: runAsNonRoot must be true (pod or container)")
        if ctx.get("runAsUser") == 0:
            bad.append(f"{name}: runAsUser 0")
        seccomp = (ctx.get("seccompProfile") or {}).get("type", pod_seccomp)
        if seccomp not in ("RuntimeDefault", "Localhost"):
            bad.append(f"{name}: seccompProfile must be RuntimeDefault or Localhost, is {seccomp}")
        caps = ctx.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            bad.append(f"{name}: capabilities must drop ALL")
        added = set(caps.get("add") or [])
        if added - {"NET_BIND_SERVICE"}:
            bad.append(f"{name}: adds capabilities {sorted(added)}")
        if added - BASELINE_CAPABILITIES:
            bad.append(f"{name}: adds non-baseline capabilities {sorted(added - BASELINE_CAPABILITIES)}")
    return bad


def hardening_violations(spec: dict) -> list[str]:
    """This project's hardening beyond the standard, on every job pod (Deployment or DAG)."""
    bad = []
    if spec.get("automountServiceAccountToken") is not False:
        bad.append("automountServiceAccountToken must be false")
    for name, c in containers(spec):
        if (c.get("securityContext") or {}).get("readOnlyRootFilesystem") is not True:
            bad.append(f"{name}: readOnlyRootFilesystem must be true")
    return bad


def writable_mounts(spec: dict, container: dict) -> dict[str, dict]:
    """mountPath -> volume of the container's mounts that it may write to."""
    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    out = {}
    for m in container.get("volumeMounts") or []:
        v = volumes[m["name"]]
        if not m.get("readOnly") and not ({"secret", "configMap", "downwardAPI", "projected"} & set(v)):
            out[m["mountPath"]] = v
    return out
