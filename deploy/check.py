#!/usr/bin/env python3
"""Checks the deploy kit against the binary it deploys (run by deploy/check.sh).

- Every OFFER_BANDIT_* variable a deploy file sets is one the binary reads.
- The Dockerfile: multi-stage, its build stage runs deploy/build.sh, its last
  stage runs as an unprivileged user and exposes the ports it listens on.
- The systemd unit: the hardening options and secrets by LoadCredential.
- The Kubernetes manifests: one replica on a PersistentVolumeClaim, the
  probes on /healthz and /readyz of the metrics port, the secrets, campaign
  file and data directory on the volumes that hold them.
- Then the binary (argv[1]) is started with the environment of the unit and
  of the StatefulSet (secrets, campaign file and data directory in a temp
  dir; ports 0), and every probe path is asked over HTTP: each must answer 200.
"""

import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPLOY = os.path.join(ROOT, "deploy")
failures = []


def check(ok, what):
    if not ok:
        failures.append(what)
        print(f"FAIL: {what}")
    return ok


def read(*path):
    with open(os.path.join(ROOT, *path), encoding="utf-8") as f:
        return f.read()


# The variables the binary reads: clap's `env = "..."` and std::env::var("...").
SOURCE = "".join(read("src", "bin", "offer-bandit", f) for f in ("cli.rs", "main.rs"))
KNOWN_VARS = set(re.findall(r'"(OFFER_BANDIT_[A-Z0-9_]+)"', SOURCE))
check(len(KNOWN_VARS) > 20, f"found only {len(KNOWN_VARS)} OFFER_BANDIT_* variables in src/")


def check_vars(names, where):
    for n in names:
        check(n in KNOWN_VARS, f"{where}: {n} is not a variable offer-bandit reads")


def port_of(addr):
    return int(addr.rsplit(":", 1)[1])


# --- Dockerfile -------------------------------------------------------------
def dockerfile_instructions(text):
    """(INSTRUCTION, arguments) with continuation lines joined."""
    out, cur = [], ""
    for line in text.splitlines():
        if line.strip().startswith("#") and not cur:
            continue
        cur += line.rstrip("\\").strip() + " " if line.endswith("\\") else line.strip()
        if line.endswith("\\"):
            continue
        if cur.strip():
            word, _, rest = cur.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
        cur = ""
    return out


docker = dockerfile_instructions(read("deploy", "Dockerfile"))
froms = [i for i, (w, _) in enumerate(docker) if w == "FROM"]
check(len(froms) >= 2, "Dockerfile: multi-stage (a build stage and a runtime stage)")
build_stage = docker[froms[0] : froms[-1]]
final_stage = docker[froms[-1] :]
check(
    any(w == "RUN" and "deploy/build.sh /out" in a for w, a in build_stage),
    "Dockerfile: the build stage runs deploy/build.sh /out",
)
check(
    any(w == "COPY" and "--from=build /out/offer-bandit " in a for w, a in final_stage),
    "Dockerfile: the last stage copies the binary deploy/build.sh wrote",
)
users = [a for w, a in final_stage if w == "USER"]
check(
    bool(users) and users[-1].split(":")[0] not in ("root", "0"),
    "Dockerfile: the last stage runs as an unprivileged USER",
)
docker_env = {}
for w, a in final_stage:
    if w == "ENV":
        for k, v in re.findall(r"(\w+)=(\S+)", a):
            docker_env[k] = v
check_vars(docker_env, "Dockerfile ENV")
exposed = {int(p) for w, a in final_stage if w == "EXPOSE" for p in a.split()}
for var in ("OFFER_BANDIT_LISTEN", "OFFER_BANDIT_METRICS_LISTEN"):
    check(
        var in docker_env and port_of(docker_env[var]) in exposed,
        f"Dockerfile: the port of {var} is EXPOSEd",
    )
    check(
        docker_env.get(var, "").startswith("0.0.0.0:"),
        f"Dockerfile: {var} listens beyond the container's loopback",
    )

# --- systemd ----------------------------------------------------------------
unit_text = read("deploy", "systemd", "offer-bandit.service")
unit = {}
for line in unit_text.splitlines():
    if "=" in line and not line.startswith(("#", "[")):
        k, _, v = line.partition("=")
        unit.setdefault(k.strip(), []).append(v.strip())
for k, v in {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "CapabilityBoundingSet": "",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "SystemCallFilter": "@system-service",
    "MemoryDenyWriteExecute": "yes",
    "DynamicUser": "yes",
    "StateDirectory": "offer-bandit",
}.items():
    check(v in unit.get(k, []), f"systemd unit: {k}={v}")
unit_env = {}
for e in unit.get("Environment", []):
    k, _, v = e.partition("=")
    unit_env[k] = v
check_vars(unit_env, "systemd unit Environment=")
creds = dict(c.split(":", 1) for c in unit.get("LoadCredential", []))
for var in (
    "OFFER_BANDIT_AUTH_TOKEN_FILE",
    "OFFER_BANDIT_READ_TOKEN_FILE",
    "OFFER_BANDIT_CUSTOMER_KEY_FILE",
):
    v = unit_env.get(var, "")
    check(
        v.startswith("%d/") and v[3:] in creds,
        f"systemd unit: {var} names a LoadCredential= secret",
    )
check(
    unit_env.get("OFFER_BANDIT_DATA_DIR") == "%S/offer-bandit",
    "systemd unit: the data directory is the StateDirectory",
)
check(
    int(unit.get("TimeoutStopSec", ["0"])[0]) >= 30,
    "systemd unit: TimeoutStopSec covers the shutdown grace and the final flush",
)

# --- Kubernetes -------------------------------------------------------------
docs = []
for f in sorted(os.listdir(os.path.join(DEPLOY, "kubernetes"))):
    if f.endswith(".yaml") and f != "kustomization.yaml":
        docs += [d for d in yaml.safe_load_all(read("deploy", "kubernetes", f)) if d]
kustomization = yaml.safe_load(read("deploy", "kubernetes", "kustomization.yaml"))
check(
    sorted(kustomization["resources"])
    == sorted(
        f
        for f in os.listdir(os.path.join(DEPLOY, "kubernetes"))
        if f.endswith(".yaml") and f != "kustomization.yaml"
    ),
    "kustomization.yaml lists every manifest",
)
by_kind = {d["kind"]: d for d in docs}
sts = by_kind.get("StatefulSet")
check(sts is not None, "kubernetes: a StatefulSet")
spec = sts["spec"]
check(spec.get("replicas") == 1, "kubernetes: exactly one replica (the store is locked)")
pod = spec["template"]["spec"]
(container,) = pod["containers"]
k8s_env = {e["name"]: e["value"] for e in container.get("env", [])}
check_vars(k8s_env, "StatefulSet env")
ports = {p["name"]: p["containerPort"] for p in container["ports"]}
check(
    ports.get("grpc") == port_of(k8s_env["OFFER_BANDIT_LISTEN"]),
    "kubernetes: the grpc containerPort is OFFER_BANDIT_LISTEN's",
)
check(
    ports.get("metrics") == port_of(k8s_env["OFFER_BANDIT_METRICS_LISTEN"]),
    "kubernetes: the metrics containerPort is OFFER_BANDIT_METRICS_LISTEN's",
)
probes = {}
for name in ("startupProbe", "livenessProbe", "readinessProbe"):
    probe = container.get(name, {}).get("httpGet")
    if not check(probe is not None, f"kubernetes: an HTTP {name}"):
        continue
    port = probe["port"]
    port = ports.get(port) if isinstance(port, str) else port
    check(
        port == ports.get("metrics"),
        f"kubernetes: {name} asks the metrics port (the probes are served there)",
    )
    probes[name] = probe["path"]
check(probes.get("livenessProbe") == "/healthz", "kubernetes: livenessProbe on /healthz")
check(probes.get("readinessProbe") == "/readyz", "kubernetes: readinessProbe on /readyz")
check(
    pod.get("terminationGracePeriodSeconds", 30) >= 30,
    "kubernetes: terminationGracePeriodSeconds covers the grace and the final flush",
)
sec = container.get("securityContext", {})
check(sec.get("allowPrivilegeEscalation") is False, "kubernetes: no privilege escalation")
check(sec.get("readOnlyRootFilesystem") is True, "kubernetes: read-only root filesystem")
check(pod.get("securityContext", {}).get("runAsNonRoot") is True, "kubernetes: runAsNonRoot")
mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
volumes = {v["name"]: v for v in pod.get("volumes", [])}
claims = {c["metadata"]["name"] for c in spec.get("volumeClaimTemplates", [])}


def mounted_from(path):
    """The volume whose mount holds `path`, and the path inside it."""
    for name, at in mounts.items():
        if path.startswith(at.rstrip("/") + "/") or path == at:
            return name, path[len(at) :].lstrip("/")
    return None, None


vol, _ = mounted_from(k8s_env["OFFER_BANDIT_DATA_DIR"])
check(vol in claims, "kubernetes: the data directory is on the PersistentVolumeClaim")
for var in (
    "OFFER_BANDIT_AUTH_TOKEN_FILE",
    "OFFER_BANDIT_READ_TOKEN_FILE",
    "OFFER_BANDIT_CUSTOMER_KEY_FILE",
):
    vol, _ = mounted_from(k8s_env.get(var, ""))
    check(
        vol in volumes and "secret" in volumes[vol],
        f"kubernetes: {var} is a file of a Secret volume",
    )
vol, key = mounted_from(k8s_env.get("OFFER_BANDIT_CONFIG", ""))
cm_name = volumes.get(vol, {}).get("configMap", {}).get("name")
configmap = by_kind.get("ConfigMap")
check(
    configmap is not None
    and configmap["metadata"]["name"] == cm_name
    and key in configmap.get("data", {}),
    "kubernetes: OFFER_BANDIT_CONFIG is a key of the ConfigMap mounted there",
)
service = by_kind.get("Service")
check(
    service is not None
    and {p["targetPort"] for p in service["spec"]["ports"]} <= set(ports),
    "kubernetes: the Service targets the container's named ports",
)


# --- the binary, with each deploy file's environment --------------------------
def run_with(binary, env_vars, probe_paths, where, tmp):
    """Starts `serve` with `env_vars` (ports 0) and asks each probe path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFER_BANDIT_")}
    env.update(env_vars)
    for var in ("OFFER_BANDIT_LISTEN", "OFFER_BANDIT_METRICS_LISTEN"):
        env[var] = "127.0.0.1:0"
    env["RUST_LOG"] = "warn"
    proc = subprocess.Popen(
        [binary, "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        metrics = None
        deadline = time.time() + 30
        while time.time() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith("offer-bandit metrics on "):
                metrics = line.split()[-1]
            if line.startswith("offer-bandit listening on "):
                break
        if not check(metrics is not None, f"{where}: the server starts ({proc.stderr.read() if proc.poll() is not None else 'no metrics address'})"):
            return
        for path in probe_paths:
            try:
                with urllib.request.urlopen(f"http://{metrics}{path}", timeout=5) as r:
                    check(r.status == 200, f"{where}: GET {path} answers {r.status}")
            except Exception as e:  # noqa: BLE001 - any failure is the finding
                check(False, f"{where}: GET {path}: {e}")
    finally:
        proc.terminate()
        proc.wait(timeout=40)


def secret_files(tmp, mapping):
    """Writes a fresh token or key to each path; returns the env to use."""
    out = {}
    for var, path in mapping.items():
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(secrets.token_hex(32))
        out[var] = path
    return out


if len(sys.argv) > 1:
    binary = os.path.abspath(sys.argv[1])
    with tempfile.TemporaryDirectory() as tmp:
        # systemd: %S is the state root, %d the credentials directory.
        env = {
            k: v.replace("%S", os.path.join(tmp, "state")).replace(
                "%d", os.path.join(tmp, "creds")
            )
            for k, v in unit_env.items()
        }
        env.update(
            secret_files(
                tmp,
                {k: v for k, v in env.items() if k.endswith(("_TOKEN_FILE", "_KEY_FILE"))},
            )
        )
        run_with(binary, env, ["/healthz", "/readyz", "/metrics"], "systemd unit", tmp)

        # Kubernetes: volumes under tmp.
        k8s_tmp = os.path.join(tmp, "k8s")
        env = {k: k8s_tmp + v if v.startswith("/") else v for k, v in k8s_env.items()}
        env.update(
            secret_files(
                tmp,
                {k: v for k, v in env.items() if k.endswith(("_TOKEN_FILE", "_KEY_FILE"))},
            )
        )
        os.makedirs(os.path.dirname(env["OFFER_BANDIT_CONFIG"]), exist_ok=True)
        with open(env["OFFER_BANDIT_CONFIG"], "w", encoding="utf-8") as f:
            f.write(configmap["data"][key])
        paths = sorted(set(probes.values()))
        run_with(binary, env, paths, "StatefulSet", tmp)

if failures:
    print(f"deploy/check.py: {len(failures)} problem(s)")
    sys.exit(1)
print("deploy/check.py: the deploy kit matches the binary")
