#!/usr/bin/env python3
"""Rollout rig: a rolling update behind a real HAProxy, with an emulated
Kubernetes control plane, counting every failed request.

For each setup (bare app, tini, tini + preStop sleep, drainit, ...) the rig:

* starts HAProxy (its own instance, loopback only) with active HTTP health
  checks, `retries 0` and no redispatch, and drives it through its runtime
  API on the admin unix socket, the way a load-balancer controller calls a
  cloud API (`add server`, `enable server`, `set server ... state maint`,
  `del server`);
* runs R replicas of examples/app_server.py, each pod in its own PID
  namespace (`unshare --pid --fork --mount-proc`), so whatever starts the
  pod (the app, tini, drainit) is a real PID 1;
* sends a steady load (keep-alive, fixed rate) through HAProxy and records
  every request's outcome, time and serving pod;
* rolls the Deployment with maxSurge 1 / maxUnavailable 0: a new pod, its
  readiness probe (as the kubelet would run it), its registration at the
  load balancer after a random propagation delay; then the deletion of an
  old pod, which starts two chains at the same moment: the endpoint removal
  reaching HAProxy after a random delay, and the kubelet's sequence
  (preStop hook, SIGTERM to PID 1, SIGKILL when the grace period is up);
* reports requests, failures by kind, termination times, how long each pod
  lingered after its last request, as JSON, a Markdown table and an SVG
  timeline.

The Kubernetes API setups (14k, 14o, 15a; `--quick-kube` runs only them)
put the emulated control plane behind the API emulation
tests/kube_support/apiserver.py (which says where each of its behaviours
comes from): HTTPS with a test CA, a service account's token, CA and
namespace files handed to each pod by the in-cluster convention
(KUBERNETES_SERVICE_HOST/PORT; DRAINIT_KUBERNETES_SECRETS and
DRAINIT_POD_NAME stand for the mounted service account and the downward
API). The rig writes through the API what the control plane's parts
write: each Pod (spec.terminationGracePeriodSeconds) before its container
starts, as the scheduler's Pod precedes the kubelet's start; an
EndpointSlice per pod when its endpoint reaches the load balancer; the
deletion (`kubectl delete --grace-period=G`: a DELETE with
DeleteOptions.gracePeriodSeconds) before the kubelet's SIGTERM, the
kubelet then killing at that deletion's grace (the kubelet kills by
metadata.deletionGracePeriodSeconds, not the spec's); and, as the
EndpointSlice controller, the pod's endpoint turning ready=false,
serving=false, terminating=true at the same random moment the rig takes
the server out of HAProxy.

Usage:
    python3 tests/rollout/rig.py --quick --json OUT.json      # the test's run
    python3 tests/rollout/rig.py --quick-kube                 # the API setups (tests/kube.rs)
    python3 tests/rollout/rig.py --report DIR                 # full comparison

Python 3.11 standard library only. Needs root (PID namespaces), haproxy,
tini, unshare (util-linux) and, for the drainit setups, the drainit binary
(default: target/debug/drainit). Uses only 127.0.0.0/8. Every process it
starts is killed on exit, failure or Ctrl-C (process groups, atexit, a
signal handler, and PR_SET_PDEATHSIG should the rig itself be killed).
"""

from __future__ import annotations

import argparse
import atexit
import ctypes
import dataclasses
import datetime
import glob
import http.client
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "examples" / "app_server.py"
APISERVER = ROOT / "tests" / "kube_support" / "apiserver.py"
NAMESPACE = "rollout"
HOST = "127.0.0.1"


class RigError(Exception):
    pass


def log(msg: str) -> None:
    sys.stderr.write(f"[rig {time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


# ---------------------------------------------------------------------------
# Configuration and setups
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class Config:
    replicas: int = 3
    rate: float = 200.0  # requests per second through HAProxy
    workers: int = 16  # client threads (each one keep-alive connection)
    request_timeout: float = 5.0
    delay: float = 5.0  # D: drainit --propagation-delay and preStop `sleep D`
    ep_delay_min: float = 1.0  # endpoint add/removal reaching the LB
    ep_delay_max: float = 3.0
    grace: float = 30.0  # terminationGracePeriodSeconds
    probe_period: float = 1.0  # kubelet readiness probe period
    lb_inter_ms: int = 1000  # HAProxy check interval
    lb_fall: int = 2
    lb_rise: int = 3
    slow_start: float = 4.0  # slow-start app variant (setup 6)
    warmup: float = 2.0  # steady traffic before the roll starts
    tail: float = 2.0  # steady traffic after the roll ends
    max_seconds: float = 1800.0  # whole run
    seed: int | None = None
    # Drain on evidence (setups 8-11): a fixed delay at the ceiling next to
    # `--propagation-delay auto` with the same ceiling, for a fair comparison.
    ceiling: float = 20.0  # fixed D of the "f" setups, --propagation-delay-max of the "a" ones
    ceiling_grace: float = 30.0  # their grace period: ceiling + the app's stop + margin
    slow_ep_delay_min: float = 6.0  # a slow balancer's registration and deregistration
    slow_ep_delay_max: float = 9.0
    low_rate: float = 5.0  # the low-traffic setups' requests per second
    reuse_purge: float = 60.0  # HAProxy pool-purge-delay of the idle keep-alive setups
    # The Kubernetes API setups (14k/14o: a deletion's grace shorter than
    # the delay; 15a: a late EndpointSlice removal under auto).
    kube_delay: float = 6.0  # their fixed --propagation-delay
    kube_deletion_grace: float = 5.0  # `kubectl delete --grace-period` (whole seconds)
    kube_kill_margin: float = 1.0  # their --kill-margin
    kube_rate: float = 5.0  # requests per second of the long polls
    kube_hold_ms: float = 8000.0  # how long the app holds each (it answers them at its stop)
    kube_workers: int = 80  # client threads for them (rate x hold, twice over)
    kube_request_timeout: float = 10.0  # the client's, above the hold (HAProxy's server timeout: 10 s)
    late_ep_delay_min: float = 4.0  # the EndpointSlice removal that lands late (15a)
    late_ep_delay_max: float = 5.0

    @classmethod
    def quick(cls) -> "Config":
        return cls(
            replicas=2,
            rate=200.0,
            delay=2.0,
            ep_delay_min=0.5,
            ep_delay_max=1.5,
            grace=10.0,
            probe_period=0.5,
            lb_inter_ms=300,
            slow_start=3.0,
            warmup=1.0,
            tail=1.0,
            max_seconds=170.0,
            # Only the auto setup runs in quick mode, so its ceiling may be
            # shorter than the full report's (where fixed and auto share one).
            ceiling=10.0,
            ceiling_grace=20.0,
        )


@dataclasses.dataclass(frozen=True)
class Setup:
    id: str
    name: str
    init: str  # "none" | "tini" | "drainit"
    prestop: str | None  # None | "sleep" | "http"
    probe: str | None  # readiness probe target: "app" | "admin" | None
    lb_check: str | None  # HAProxy health check target: "app" | "admin" | None
    slow: bool = False
    ready_check: bool = False  # drainit --ready-check on the app's /healthz
    drainit_setup: bool = False
    # A second container in the pod: `drainit sidecar` as its PID 1 (same
    # loopback, its own PID namespace). `init` is then the app container's
    # PID 1, "admin" (probe, lb_check, the preStop httpGet) the sidecar.
    sidecar: bool = False
    # The propagation delay: "D" (Config.delay, drainit and preStop sleep),
    # "ceiling" (fixed at Config.ceiling) or "auto" (--propagation-delay
    # auto with --propagation-delay-max Config.ceiling).
    delay: str = "D"
    balancer: str = "fast"  # "fast": Config.ep_delay_*; "slow": Config.slow_ep_delay_*
    traffic: str = "normal"  # "normal": Config.rate; "low": Config.low_rate
    # HAProxy keeps idle keep-alive connections to the backends
    # (`http-reuse always`, pool-purge-delay Config.reuse_purge).
    reuse: bool = False
    quick: bool = True  # part of the --quick run (the cargo test)
    # The Kubernetes API emulation behind the control plane: None (no API),
    # "api" (drainit uses it) or "off" (the same cluster, `--kubernetes off`).
    kube: str | None = None
    # The deletion's grace, shorter than the spec's (Config.kube_deletion_grace);
    # False: a plain deletion with the pod's terminationGracePeriodSeconds.
    short_deletion: bool = False
    # Long polls: Config.kube_rate requests, each held Config.kube_hold_ms
    # by the app and answered at once at its stop signal, so that requests
    # are in flight whenever the stop signal or a SIGKILL comes.
    long_polls: bool = False
    # The fixed/auto pair this setup belongs to, for the side-by-side table.
    pair: str | None = None

    @property
    def auto(self) -> bool:
        return self.delay == "auto"

    @property
    def kube_quick(self) -> bool:
        """Part of the --quick-kube run (tests/kube.rs)."""
        return self.kube is not None


# Data-driven: a setup is one entry (plus an `init` kind or a flag).
SETUPS = [
    Setup("1", "bare app as PID 1, no preStop", "none", None, "app", "app"),
    Setup("2", "tini, no preStop", "tini", None, "app", "app"),
    Setup("3", "tini + preStop exec sleep D", "tini", "sleep", "app", "app"),
    Setup("4", "drainit ENTRYPOINT, no preStop", "drainit", None, "admin", "admin",
          ready_check=True, drainit_setup=True),
    Setup("5", "drainit + preStop httpGet /prestop", "drainit", "http", "admin", "admin",
          ready_check=True, drainit_setup=True),
    Setup("6a", "slow start: tini + preStop sleep D, no readiness gating", "tini", "sleep",
          None, None, slow=True),
    Setup("6b", "slow start: drainit --ready-check", "drainit", None, "admin", None,
          slow=True, ready_check=True, drainit_setup=True),
    # Classic sidecar: the app container (tini + app, unchanged image) has a
    # preStop httpGet to the sidecar's /prestop; the sidecar container runs
    # `drainit sidecar` and gets its own SIGTERM at deletion.
    Setup("7", "drainit sidecar (classic) + app preStop httpGet /prestop", "tini", "http",
          "admin", "admin", ready_check=True, drainit_setup=True, sidecar=True),
]

# Drain on evidence: each scenario twice, a fixed delay at the ceiling and
# `auto` with the same ceiling; drainit ENTRYPOINT, no preStop, HAProxy
# checking drainit's /ready on the admin port (which drainit never watches).
# Setups 8-11 keep HAProxy's connection handling of setups 1-7 (a new
# backend connection per request, closed by HAProxy); 11-13 let HAProxy keep
# idle keep-alive connections to the backends, as ingress proxies and cloud
# load balancers do. 12 and 13 are auto only: their fixed twin is 9f / 10f
# (a fixed delay does not depend on how the connections are kept).
PAIRS = [
    ("8", "fast balancer, 200 req/s", {}, ("ceiling", "auto")),
    ("9", "slow balancer (6-9 s), 200 req/s", {"balancer": "slow"}, ("ceiling", "auto")),
    ("10", "low traffic (5 req/s)", {"traffic": "low"}, ("ceiling", "auto")),
    ("11", "fast balancer, 200 req/s, HAProxy keeps idle keep-alive connections",
     {"reuse": True}, ("ceiling", "auto")),
    ("12", "slow balancer (6-9 s), 200 req/s, idle keep-alive connections",
     {"balancer": "slow", "reuse": True}, ("auto",)),
    ("13", "low traffic (5 req/s), idle keep-alive connections",
     {"traffic": "low", "reuse": True}, ("auto",)),
]
FIXED_TWIN = {"12": "9", "13": "10"}
for _pid, _what, _kw, _modes in PAIRS:
    for _mode in _modes:
        _suffix, _label = {"ceiling": ("f", "fixed delay = ceiling"), "auto": ("a", "auto")}[_mode]
        # A slow balancer is one that only the endpoint removal takes the pod
        # out of (kube-proxy; a cloud LB whose health checks are slower than
        # its deregistration): HAProxy's 1 s checks on /ready would take it
        # out after 2 s whatever the deregistration delay.
        _lb_check = None if _kw.get("balancer") == "slow" else "admin"
        SETUPS.append(Setup(
            f"{_pid}{_suffix}", f"{_what}: drainit {_label}", "drainit", None, "admin", _lb_check,
            ready_check=True, drainit_setup=True, delay=_mode, pair=_pid,
            # The quick run has one of them: auto, fast balancer, 200 req/s,
            # keep-alive connections to the backends.
            quick=(_pid == "11" and _mode == "auto"), **_kw))
PAIR_NAMES = {pid: what for pid, what, _, _ in PAIRS}

# The Kubernetes API (issue 18). 14k/14o: `kubectl delete --grace-period=5`
# on pods whose delay is 6 s, long polls in flight: with the API drainit
# cuts its delay, the app answers them at its stop signal and exits before
# the kubelet's SIGKILL; with `--kubernetes off` (today's drainit) the
# SIGKILL lands in the delay and cuts them. (Requests that take a fixed
# time would end the same either way: only an app told to stop can answer
# early, which is what a long poll, a watch or a stream does.)
# 15a: auto, the EndpointSlice removal landing late (4-5 s), after the
# traffic has stopped (HAProxy follows /ready): auto waits for it.
SETUPS += [
    Setup("14k", "deletion grace 5 s < delay 6 s: drainit with the Kubernetes API", "drainit", None,
          "admin", "admin", ready_check=True, drainit_setup=True, delay="kube", kube="api",
          short_deletion=True, long_polls=True, quick=False),
    Setup("14o", "deletion grace 5 s < delay 6 s: drainit --kubernetes off", "drainit", None,
          "admin", "admin", ready_check=True, drainit_setup=True, delay="kube", kube="off",
          short_deletion=True, long_polls=True, quick=False),
    Setup("15a", "late EndpointSlice removal (4-5 s): drainit auto with the Kubernetes API",
          "drainit", None, "admin", "admin", ready_check=True, drainit_setup=True, delay="auto",
          balancer="late", reuse=True, kube="api", quick=False),
]


# ---------------------------------------------------------------------------
# Processes: every child is registered, killed on exit
# ---------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def _child_setup() -> None:
    # Die with the rig even if it is SIGKILLed. (The parent, for this, is
    # the spawning thread: the rig spawns long-lived children from the main
    # thread only.)
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class Procs:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.procs: list[subprocess.Popen] = []

    def spawn(self, argv: list[str], log_path: Path, env: dict | None = None) -> subprocess.Popen:
        with open(log_path, "ab") as out:
            p = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_child_setup,
                env=env,
                close_fds=True,
            )
        with self.lock:
            self.procs.append(p)
        return p

    def run(self, argv: list[str], timeout: float) -> int:
        """A short-lived child (an exec hook), killed at timeout."""
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True,
                             preexec_fn=_child_setup)
        with self.lock:
            self.procs.append(p)
        try:
            return p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(p.pid)
            p.wait()
            return -9

    def cleanup(self) -> None:
        # A pod's PID 1 is in the process group of its `unshare` (which also
        # has --kill-child); when it dies the kernel kills its whole PID
        # namespace.
        with self.lock:
            procs = list(self.procs)
        for p in procs:
            if p.poll() is None:
                kill_group(p.pid)
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        with self.lock:
            self.procs = [p for p in self.procs if p.poll() is None]


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        try:
            os.kill(pgid, signal.SIGKILL)
        except OSError:
            pass


PROCS = Procs()
atexit.register(PROCS.cleanup)


def _on_signal(signum, _frame):
    # Turn SIGINT/SIGTERM/SIGHUP into an exception in the main thread; the
    # finally blocks and atexit then kill every child.
    signal.signal(signum, signal.SIG_DFL)
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


_used_ports: set[int] = set()


def free_port() -> int:
    for _ in range(100):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((HOST, 0))
        port = s.getsockname()[1]
        s.close()
        if port not in _used_ports:
            _used_ports.add(port)
            return port
    raise RigError("no free loopback port")


def http_get(port: int, path: str, timeout: float) -> int | None:
    """Status code of GET http://127.0.0.1:port/path, None on transport error."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        r = conn.getresponse()
        r.read()
        return r.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


# ---------------------------------------------------------------------------
# HAProxy
# ---------------------------------------------------------------------------


class HAProxy:
    def __init__(self, binary: str, workdir: Path, cfg: Config, setup: Setup) -> None:
        self.binary = binary
        self.dir = workdir
        self.cfg = cfg
        self.setup = setup
        self.sock = str(workdir / "haproxy.sock")
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.lock = threading.Lock()

    def config_text(self) -> str:
        path = {"app": "/healthz", "admin": "/ready"}.get(self.setup.lb_check or "", "/healthz")
        # Idle keep-alive connections to the backends, shared by all client
        # connections and kept in the pool (add_server's pool-purge-delay),
        # as an ingress proxy's upstream keep-alive does.
        reuse = "    http-reuse always\n" if self.setup.reuse else ""
        return f"""# generated by tests/rollout/rig.py for setup {self.setup.id}
global
    stats socket {self.sock} mode 600 level admin
    stats timeout 10s
    maxconn 1000

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 10s
    timeout http-keep-alive 10s
    timeout check 1s
    # No retries and no redispatch: cloud load balancers don't retry for you.
    retries 0

frontend fe
    bind {HOST}:{self.port}
    default_backend be

backend be
    balance roundrobin
    option httpchk GET {path}
{reuse}"""

    def start(self, deadline: float) -> None:
        cfgfile = self.dir / "haproxy.cfg"
        cfgfile.write_text(self.config_text())
        check = subprocess.run([self.binary, "-c", "-q", "-f", str(cfgfile)],
                               capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            raise RigError(f"haproxy rejected its config: {check.stderr or check.stdout}")
        self.proc = PROCS.spawn([self.binary, "-db", "-f", str(cfgfile)], self.dir / "haproxy.log")
        while True:
            if self.proc.poll() is not None:
                raise RigError("haproxy exited at start: " + tail(self.dir / "haproxy.log"))
            try:
                if "Name:" in self.cmd("show info"):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RigError("haproxy admin socket did not come up")
            time.sleep(0.05)

    def cmd(self, line: str) -> str:
        with self.lock:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(5)
            try:
                s.connect(self.sock)
                s.sendall(line.encode() + b"\n")
                out = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    out += chunk
            finally:
                s.close()
        return out.decode(errors="replace")

    def add_server(self, pod: "Pod") -> None:
        name = pod.name
        addr = f"{HOST}:{pod.app_port}"
        # A server added through the runtime API keeps no idle connection by
        # default (pool-max-conn 0): HAProxy opens one connection per request
        # and closes it itself after the response. The `reuse` setups lift
        # that (pool-max-conn -1, no limit, as for servers of the config
        # file), so the connections stay open between requests.
        if self.setup.reuse:
            pool = f"pool-purge-delay {fmt_dur(self.cfg.reuse_purge)} pool-max-conn -1"
        else:
            pool = "pool-purge-delay 500"
        if self.setup.lb_check:
            port = pod.app_port if self.setup.lb_check == "app" else pod.admin_port
            c = self.cfg
            out = self.cmd(f"add server be/{name} {addr} check port {port} inter {c.lb_inter_ms} "
                           f"fall {c.lb_fall} rise {c.lb_rise} {pool}")
            if "registered" not in out:
                raise RigError(f"add server {name}: {out.strip()}")
            # A new target starts unhealthy and needs `rise` good checks
            # before it takes traffic, as a cloud target group does.
            self.cmd(f"enable health be/{name}; enable server be/{name}; "
                     f"set server be/{name} health down")
        else:
            out = self.cmd(f"add server be/{name} {addr} {pool}")
            if "registered" not in out:
                raise RigError(f"add server {name}: {out.strip()}")
            self.cmd(f"enable server be/{name}")

    def deregister(self, name: str) -> None:
        self.cmd(f"set server be/{name} state maint")

    def delete_server(self, name: str, deadline: float) -> bool:
        """`del server` once the server's connections are gone."""
        while time.monotonic() < deadline:
            out = self.cmd(f"del server be/{name}")
            if "deleted" in out or "No such server" in out:
                return True
            time.sleep(0.25)
        return False

    def server_states(self) -> dict[str, int]:
        """name -> operational state (0 stopped, 1 starting, 2 running, 3 stopping)."""
        out = self.cmd("show servers state be")
        states = {}
        for line in out.splitlines():
            f = line.split()
            if len(f) > 6 and f[1] == "be":
                states[f[3]] = int(f[5]) if f[6] == "0" else -1  # -1: maintenance
        return states

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            kill_group(self.proc.pid)
            self.proc.wait()


def tail(path: Path, n: int = 15) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-n:])


# ---------------------------------------------------------------------------
# The Kubernetes API emulation (the API setups)
# ---------------------------------------------------------------------------


def openssl(cwd: Path, args: list[str]) -> None:
    r = subprocess.run(["openssl"] + args, cwd=cwd, capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise RigError(f"openssl {' '.join(args[:2])} failed: {r.stderr.strip()}")


class KubeAPI:
    """tests/kube_support/apiserver.py for one setup, with a cluster CA,
    its serving certificate for 127.0.0.1, the service account's files
    that every pod mounts, and an admin's token for the rig's own writes
    (what the scheduler, the EndpointSlice controller and `kubectl delete`
    write in a cluster)."""

    POD_TOKEN = "rig-pod-token"
    ADMIN_TOKEN = "rig-admin-token"

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir / "apiserver"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.secrets = self.dir / "serviceaccount"
        self.port = free_port()
        self.log = self.dir / "requests"
        self.proc: subprocess.Popen | None = None
        self.context: ssl.SSLContext | None = None

    def start(self, deadline: float) -> None:
        d = self.dir
        openssl(d, ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
                    "-subj", "/CN=rig-cluster-ca", "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,keyCertSign"])
        (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:kubernetes.default.svc\n"
                                      "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
        openssl(d, ["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=kube-apiserver"])
        openssl(d, ["x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                    "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "server.ext"])
        self.secrets.mkdir(exist_ok=True)
        shutil.copy(d / "ca.crt", self.secrets / "ca.crt")
        (self.secrets / "token").write_text(self.POD_TOKEN + "\n")
        (self.secrets / "namespace").write_text(NAMESPACE)
        (d / "tokens").write_text(f"{self.POD_TOKEN}\n{self.ADMIN_TOKEN}\n")
        ready = d / "ready"
        self.proc = PROCS.spawn([sys.executable, str(APISERVER), "--port", str(self.port),
                                 "--cert", str(d / "server.crt"), "--key", str(d / "server.key"),
                                 "--tokens", str(d / "tokens"), "--log", str(self.log),
                                 "--namespace", NAMESPACE, "--ready", str(ready)],
                                d / "apiserver.log")
        while not ready.exists():
            if self.proc.poll() is not None:
                raise RigError("the API emulation exited at start: " + tail(d / "apiserver.log"))
            if time.monotonic() > deadline:
                raise RigError("the API emulation did not start")
            time.sleep(0.05)
        self.context = ssl.create_default_context(cafile=str(d / "ca.crt"))

    def pod_env(self, name: str) -> dict:
        """In a pod: the service's address, the mounted service account, the
        downward API's name (DRAINIT_POD_NAME; $HOSTNAME is the rig's)."""
        return {"KUBERNETES_SERVICE_HOST": HOST, "KUBERNETES_SERVICE_PORT": str(self.port),
                "DRAINIT_KUBERNETES_SECRETS": str(self.secrets), "DRAINIT_POD_NAME": name}

    def request(self, method: str, path: str, body: dict | None = None) -> dict:
        conn = http.client.HTTPSConnection(HOST, self.port, timeout=10, context=self.context)
        try:
            data = None if body is None else json.dumps(body).encode()
            conn.request(method, path, body=data, headers={
                "Authorization": f"Bearer {self.ADMIN_TOKEN}", "Content-Type": "application/json"})
            r = conn.getresponse()
            answer = json.loads(r.read() or b"{}")
        except (OSError, http.client.HTTPException, ValueError) as e:
            raise RigError(f"API {method} {path}: {e}") from e
        finally:
            conn.close()
        if not 200 <= r.status < 300:
            raise RigError(f"API {method} {path} answered {r.status}: {answer.get('message')}")
        return answer

    def create_pod(self, name: str, grace: float) -> None:
        self.request("POST", f"/api/v1/namespaces/{NAMESPACE}/pods", {
            "kind": "Pod", "apiVersion": "v1", "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"terminationGracePeriodSeconds": int(grace),
                     "containers": [{"name": "app", "image": "app:2"}],
                     "serviceAccountName": "drainit"}})

    def slice_body(self, pod: "Pod", serving: bool) -> dict:
        """The pod's endpoint in its own slice of the Service `web` (one
        slice per pod: the rig's pods share an address, not a port)."""
        return {"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
                "metadata": {"name": f"web-{pod.name}", "namespace": NAMESPACE,
                             "labels": {"kubernetes.io/service-name": "web"}},
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": pod.app_port, "protocol": "TCP"}],
                "endpoints": [{"addresses": [HOST],
                               "conditions": {"ready": serving, "serving": serving,
                                              "terminating": not serving},
                               "targetRef": {"kind": "Pod", "name": pod.name,
                                             "namespace": NAMESPACE}}]}

    def add_endpoint(self, pod: "Pod") -> None:
        self.request("POST", f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices",
                     self.slice_body(pod, True))

    def remove_endpoint(self, pod: "Pod") -> None:
        """The EndpointSlice controller's update for a terminating pod."""
        self.request("PUT", f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices/"
                     f"web-{pod.name}", self.slice_body(pod, False))

    def delete_pod(self, name: str, grace: int | None) -> float:
        """`kubectl delete pod [--grace-period=G]`; returns the deletion's grace."""
        options = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if grace is not None:
            options["gracePeriodSeconds"] = grace
        pod = self.request("DELETE", f"/api/v1/namespaces/{NAMESPACE}/pods/{name}", options)
        return float(pod["metadata"]["deletionGracePeriodSeconds"])

    def requests(self) -> list[dict]:
        try:
            lines = self.log.read_text().splitlines()
        except OSError:
            return []
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def drainit_requests(self) -> int:
        """Requests made with the pods' token (drainit's, never the rig's)."""
        return sum(1 for r in self.requests() if r.get("token") == self.POD_TOKEN)

    def events(self, pod: str) -> list[dict]:
        """The Events posted about `pod`, in order."""
        return [r["body"] for r in self.requests()
                if r.get("method") == "POST" and r.get("path", "").endswith("/events")
                and isinstance(r.get("body"), dict)
                and r["body"].get("involvedObject", {}).get("name") == pod]

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            kill_group(self.proc.pid)
            self.proc.wait()


# ---------------------------------------------------------------------------
# Pods
# ---------------------------------------------------------------------------

APP_LOG = re.compile(r"app\[(?P<name>[^\]]+)\] pid=\d+ t=(?P<t>[0-9.]+) (?P<msg>.*)")


class Container:
    """One container of a pod: its PID 1 in its own PID namespace
    (`unshare --pid --fork`), the pod's loopback shared with the others."""

    def __init__(self, pod_name: str, role: str, log_path: Path) -> None:
        self.pod_name = pod_name
        self.role = role  # "app" | "sidecar"
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.pid1: int | None = None
        self.t_sigterm = self.t_exit = None
        self.prestop_result = None
        self.killed = False

    def start(self, argv: list[str], deadline: float, extra_env: dict | None = None) -> None:
        # Nothing of the rig's own environment steers drainit: no DRAINIT_*
        # setting, and no Kubernetes API but the emulation the API setups
        # hand in (the rig may itself run in a pod; traffic stays on loopback).
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("DRAINIT_", "KUBERNETES_"))}
        env["PYTHONUNBUFFERED"] = "1"
        env.update(extra_env or {})
        argv = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child=SIGKILL"] + argv
        self.proc = PROCS.spawn(argv, self.log_path, env=env)
        # `unshare --fork` is the parent; the container's PID 1 is its child.
        while True:
            kids = []
            for f in glob.glob(f"/proc/{self.proc.pid}/task/*/children"):
                try:
                    kids += [int(x) for x in Path(f).read_text().split()]
                except OSError:
                    pass
            if kids:
                self.pid1 = kids[0]
                return
            if self.proc.poll() is not None:
                raise RigError(f"pod {self.pod_name} ({self.role}) exited at start "
                               f"(rc {self.proc.returncode}):\n" + tail(self.log_path))
            if time.monotonic() > deadline:
                raise RigError(f"pod {self.pod_name} ({self.role}): no PID 1 found under unshare")
            time.sleep(0.01)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exit_code(self) -> int | None:
        """PID 1's exit code as `unshare` passes it on (None while running)."""
        return None if self.proc is None else self.proc.poll()

    def signal_pid1(self, sig: int) -> None:
        try:
            os.kill(self.pid1, sig)
        except ProcessLookupError:
            pass

    def wait_exit(self, until: float) -> bool:
        """Wait for the container (its PID 1, hence unshare) to exit, up to
        a wall-clock time. Records the exit time."""
        while True:
            if self.proc.poll() is not None:
                if self.t_exit is None:
                    self.t_exit = time.time()
                return True
            if time.time() >= until:
                return False
            time.sleep(0.005)

    def kill(self) -> None:
        if self.alive():
            kill_group(self.proc.pid)
            self.proc.wait()


class Pod:
    """The app container and, in the sidecar setup, a drainit sidecar container."""

    def __init__(self, rig: "Rig", setup: Setup, name: str) -> None:
        self.rig = rig
        self.setup = setup
        self.name = name
        self.app_port = free_port()
        self.admin_port = free_port()
        self.app = Container(name, "app", rig.setup_dir / f"{name}.log")
        self.sidecar = (Container(name, "sidecar", rig.setup_dir / f"{name}-sidecar.log")
                        if setup.sidecar else None)
        self.containers = [self.app] + ([self.sidecar] if self.sidecar else [])
        self.t_start = self.t_ready = self.t_registered = None
        self.t_deleted = self.t_deregistered = None
        self.del_server_ok = None
        # The Kubernetes API setups: when the EndpointSlice said the endpoint
        # no longer serves, and when the kubelet's grace (the deletion's) ends.
        self.t_endpoint_removed = self.t_grace_end = None

    # The app container's figures, as before there were sidecars.
    @property
    def log_path(self) -> Path:
        return self.app.log_path

    @property
    def t_sigterm(self) -> float | None:
        return self.app.t_sigterm

    @property
    def prestop_result(self) -> str | None:
        return self.app.prestop_result

    @property
    def t_exit(self) -> float | None:
        """The pod is gone when its last container has exited."""
        ts = [c.t_exit for c in self.containers]
        return None if None in ts else max(ts)

    @property
    def killed(self) -> bool:
        return any(c.killed for c in self.containers)

    def app_argv(self) -> list[str]:
        cfg = self.rig.cfg
        app = [sys.executable, str(APP), "--port", str(self.app_port), "--name", self.name]
        if self.setup.slow:
            app += ["--slow-start", str(cfg.slow_start)]
        if self.setup.long_polls:
            app += ["--hold-ms", str(cfg.kube_hold_ms)]
        if self.setup.init == "none":
            return app
        if self.setup.init == "tini":
            return [self.rig.tini, "--"] + app
        if self.setup.init == "drainit":
            return self.drainit_argv() + ["--"] + app
        raise RigError(f"unknown init {self.setup.init}")

    def drainit_argv(self) -> list[str]:
        cfg = self.rig.cfg
        argv = [self.rig.drainit]
        if self.setup.auto:
            argv += ["--propagation-delay", "auto",
                     "--propagation-delay-max", fmt_dur(cfg.ceiling)]
        else:
            argv += ["--propagation-delay", fmt_dur(self.rig.fixed_delay(self.setup))]
        argv += [
            "--grace-period", fmt_dur(self.rig.grace(self.setup)),
            "--admin-listen", f"{HOST}:{self.admin_port}",
            # The rig's pods share the host's network namespace (each has its
            # own PID namespace only), so drainit is told the pod's port; in a
            # real pod the default `all` (every listening port but drainit's
            # admin port) is that same port.
            "--traffic-ports", str(self.app_port),
        ]
        if self.setup.ready_check:
            argv += ["--ready-check", f"http://{HOST}:{self.app_port}/healthz",
                     "--ready-check-interval", "200ms"]
        if self.setup.kube == "off":
            argv += ["--kubernetes", "off"]
        if self.setup.delay == "kube":
            argv += ["--kill-margin", fmt_dur(cfg.kube_kill_margin)]
        return argv

    def kube_env(self) -> dict | None:
        """The in-cluster convention for drainit (None without the API)."""
        if self.setup.kube is None:
            return None
        return self.rig.kube.pod_env(self.name)

    def start(self, deadline: float) -> None:
        if self.setup.kube is not None:
            # The Pod object exists before the kubelet starts its containers.
            self.rig.kube.create_pod(self.name, self.rig.grace(self.setup))
        self.t_start = time.time()
        self.app.start(self.app_argv(), deadline, self.kube_env())
        if self.sidecar:
            self.sidecar.start(self.drainit_argv() + ["sidecar"], deadline, self.kube_env())

    def alive(self) -> bool:
        """Every container still runs (a classic pod has no restarts here)."""
        return all(c.alive() for c in self.containers)

    def tail_logs(self) -> str:
        return "\n".join(f"--- {c.role} container ---\n{tail(c.log_path)}" if self.sidecar
                         else tail(c.log_path) for c in self.containers)

    def died(self) -> str:
        return ", ".join(f"{c.role} rc {c.exit_code()}" for c in self.containers if not c.alive())

    def probe_port_path(self) -> tuple[int, str] | None:
        if self.setup.probe == "app":
            return self.app_port, "/healthz"
        if self.setup.probe == "admin":
            return self.admin_port, "/ready"
        return None

    def wait_ready(self, deadline: float) -> None:
        """The kubelet's readiness probe (successThreshold 1); without a
        probe, a started container counts as Ready at once."""
        target = self.probe_port_path()
        if target is None:
            self.t_ready = time.time()
            return
        while True:
            if not self.alive():
                raise RigError(f"pod {self.name} died before Ready ({self.died()}):\n"
                               + self.tail_logs())
            code = http_get(target[0], target[1], timeout=1.0)
            if code is not None and 200 <= code < 400:
                self.t_ready = time.time()
                return
            if time.monotonic() > deadline:
                raise RigError(f"pod {self.name} never became Ready (last probe: {code}):\n"
                               + self.tail_logs())
            time.sleep(self.rig.cfg.probe_period)

    def wait_serving(self, deadline: float) -> None:
        # With auto, drainit counts every request on the app's port as
        # traffic, and nothing but the Service's traffic reaches it in a
        # pod: wait through drainit's /ready (its --ready-check), not with
        # a request of the rig's own to the app.
        port, path = ((self.admin_port, "/ready") if self.setup.auto and self.setup.ready_check
                      else (self.app_port, "/healthz"))
        while http_get(port, path, timeout=1.0) != 200:
            if not self.alive():
                raise RigError(f"pod {self.name} died at start ({self.died()}):\n"
                               + self.tail_logs())
            if time.monotonic() > deadline:
                raise RigError(f"pod {self.name}: app never answered /healthz:\n" + self.tail_logs())
            time.sleep(0.05)

    def kill(self) -> None:
        for c in self.containers:
            c.kill()

    def app_events(self) -> list[tuple[float, str]]:
        out = []
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return out
        for line in text.splitlines():
            m = APP_LOG.search(line)
            if m and m.group("name") == self.name:
                out.append((float(m.group("t")), m.group("msg")))
        return out

    def app_stop_time(self) -> float | None:
        for t, msg in self.app_events():
            if msg.startswith("stop signal"):
                return t
        return None

    def drainit_log_path(self) -> Path | None:
        if self.sidecar:
            return self.sidecar.log_path
        return self.app.log_path if self.setup.init == "drainit" else None

    def drain_traffic(self) -> dict | None:
        """drainit's own account of the drain: its `drain started` and `drain
        traffic: ...` log lines, with the moments as wall-clock times."""
        path = self.drainit_log_path()
        if path is None:
            return None
        try:
            text = path.read_text(errors="replace")
        except OSError:
            return None
        started = line = None
        for ln in text.splitlines():
            m = DRAINIT_LOG.match(ln)
            if not m:
                continue
            if m.group("msg").startswith("drain started") and started is None:
                started = parse_utc(m.group("ts"))
            elif m.group("msg").startswith("drain traffic: ") and line is None:
                line = m.group("msg")[len("drain traffic: "):]
        if line is None:
            return None
        out = {"text": line, "drain_started": started, "observed": True,
               "last_new_connection_s": None, "last_inbound_s": None,
               "open_connections": None, "reason": None, "ended_after_s": None,
               "quiet_for_s": None, "window_s": None, "rate_before_per_s": None,
               "traffic_stopped": None}
        if line.startswith("traffic not observed"):
            out["observed"] = False
            return out
        m = TRAFFIC_LINE.match(line)
        if not m:
            raise RigError(f"pod {self.name}: cannot read drainit's drain traffic line: {line}")
        num = lambda k: None if m.group(k) is None else float(m.group(k))
        first = lambda *keys: next((m.group(k) for k in keys if m.group(k) is not None), None)
        after = first("after_f", "after_q", "after_c", "after_e", "after_xl", "after_x")
        out.update(last_new_connection_s=num("new"), last_inbound_s=num("inbound"),
                   open_connections=int(m.group("open")),
                   reason=first("reason", "reason_q", "reason_c", "reason_e", "reason_x"),
                   ended_after_s=None if after is None else float(after),
                   quiet_for_s=num("quiet"), window_s=num("window"),
                   rate_before_per_s=num("rate"))
        if started is not None:
            stopped = max(x for x in (out["last_new_connection_s"], out["last_inbound_s"], 0.0)
                          if x is not None)
            out["traffic_stopped"] = started + stopped
        return out


DRAINIT_LOG = re.compile(r"(?P<ts>\d{4}-\d\d-\d\dT[0-9:.]+Z)\s+[A-Z]+\s+(?P<msg>.*)")
TRAFFIC_LINE = re.compile(
    r"last new connection (?:none|at (?P<new>[0-9.]+) ?s), "
    r"last inbound byte (?:none|at (?P<inbound>[0-9.]+) ?s) into the drain; "
    r"(?P<open>\d+) connections open"
    r"(?:; delay ended: (?:(?P<reason>fixed) delay of (?P<after_f>[0-9.]+) ?s|"
    r"(?P<reason_q>quiet) for (?P<quiet>[0-9.]+) ?s after (?P<after_q>[0-9.]+) ?s|"
    r"(?P<reason_c>ceiling) after (?P<after_c>[0-9.]+) ?s|"
    # auto's quiet held for the endpoint's removal (Kubernetes API)
    r"(?P<reason_e>endpoint)(?:'s removal| watch's failure) after (?P<after_e>[0-9.]+) ?s|"
    # the deletion's grace cut the delay (Kubernetes API)
    r"(?P<reason_x>cut) to (?P<after_x>[0-9.]+) ?s by the deletion's grace [0-9.]+ ?s"
    r"(?:, ended after (?P<after_xl>[0-9.]+) ?s)?)"
    r"(?:[^;]*; .*?window (?P<window>[0-9.]+) ?s(?: from (?P<rate>[0-9.]+) arrivals/s)?)?)?")


def parse_utc(ts: str) -> float:
    return datetime.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def fmt_dur(seconds: float) -> str:
    ms = int(round(seconds * 1000))
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


# ---------------------------------------------------------------------------
# Load client
# ---------------------------------------------------------------------------


class LoadClient:
    """Open-loop load: request i is due at t0 + i/rate, sent by whichever of
    the worker threads (one keep-alive connection each) is free."""

    def __init__(self, port: int, cfg: Config, rate: float, workers: int | None = None,
                 timeout: float | None = None) -> None:
        self.port = port
        self.cfg = cfg
        self.rate = rate
        self.workers = workers or cfg.workers
        self.timeout = timeout or cfg.request_timeout
        self.lock = threading.Lock()
        self.next = 0
        self.stop_ev = threading.Event()
        self.records: list[tuple[float, float, str, str | None]] = []  # (t_send, t_done, kind, pod)
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        self.t0_mono = time.monotonic()
        self.t0 = time.time()
        for i in range(self.workers):
            t = threading.Thread(target=self.worker, name=f"load-{i}", daemon=True)
            t.start()
            self.threads.append(t)

    def stop(self) -> None:
        self.stop_ev.set()
        for t in self.threads:
            t.join(timeout=self.timeout + 2)

    def worker(self) -> None:
        conn = None
        while not self.stop_ev.is_set():
            with self.lock:
                i = self.next
                self.next += 1
            wait = self.t0_mono + i / self.rate - time.monotonic()
            if wait > 0 and self.stop_ev.wait(wait):
                break
            t_send = time.time()
            pod = None
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(HOST, self.port, timeout=self.timeout)
                conn.request("GET", "/", headers={"Host": "rollout.test"})
                r = conn.getresponse()
                r.read()
                pod = r.getheader("X-Pod")
                kind = "ok" if 200 <= r.status < 300 else f"http_{r.status}"
                if r.will_close:
                    conn.close()
                    conn = None
            except socket.timeout:
                kind = "timeout"
            except ConnectionRefusedError:
                kind = "refused"
            except (ConnectionResetError, BrokenPipeError):  # incl. RemoteDisconnected
                kind = "reset"
            except (OSError, http.client.HTTPException) as e:
                kind = f"error_{type(e).__name__}"
            if kind not in ("ok",) and conn is not None and not kind.startswith("http_"):
                conn.close()
                conn = None
            with self.lock:
                self.records.append((t_send, time.time(), kind, pod))
        if conn is not None:
            conn.close()


# ---------------------------------------------------------------------------
# One setup: bootstrap, roll, measure
# ---------------------------------------------------------------------------


class Rig:
    def __init__(self, cfg: Config, workdir: Path, tini: str | None, drainit: str | None,
                 haproxy: str) -> None:
        self.cfg = cfg
        self.workdir = workdir
        self.tini = tini
        self.drainit = drainit
        self.haproxy = haproxy
        self.rng = random.Random(cfg.seed)
        self.t_end = time.monotonic() + cfg.max_seconds
        self.setup_dir = workdir
        self.kube: KubeAPI | None = None

    def deadline(self, seconds: float) -> float:
        d = min(time.monotonic() + seconds, self.t_end)
        if time.monotonic() >= self.t_end:
            raise RigError(f"run exceeded its time budget of {self.cfg.max_seconds:.0f}s")
        return d

    def ep_range(self, setup: Setup) -> tuple[float, float]:
        """How long endpoint changes take to reach the load balancer."""
        c = self.cfg
        if setup.balancer == "slow":
            return c.slow_ep_delay_min, c.slow_ep_delay_max
        if setup.balancer == "late":
            return c.late_ep_delay_min, c.late_ep_delay_max
        return c.ep_delay_min, c.ep_delay_max

    def ep_delay(self, setup: Setup) -> float:
        return self.rng.uniform(*self.ep_range(setup))

    def grace(self, setup: Setup) -> float:
        """terminationGracePeriodSeconds (and drainit's --grace-period)."""
        return self.cfg.grace if setup.delay in ("D", "kube") else self.cfg.ceiling_grace

    def deletion_grace(self, setup: Setup) -> int | None:
        """The grace a deletion asks for; None: the pod's own."""
        return int(self.cfg.kube_deletion_grace) if setup.short_deletion else None

    def fixed_delay(self, setup: Setup) -> float:
        if setup.delay == "kube":
            return self.cfg.kube_delay
        return self.cfg.delay if setup.delay == "D" else self.cfg.ceiling

    def rate(self, setup: Setup) -> float:
        if setup.long_polls:
            return self.cfg.kube_rate
        return self.cfg.low_rate if setup.traffic == "low" else self.cfg.rate

    def run_setup(self, setup: Setup) -> dict:
        cfg = self.cfg
        self.setup_dir = self.workdir / f"setup-{setup.id}"
        self.setup_dir.mkdir(parents=True, exist_ok=True)
        log(f"setup {setup.id}: {setup.name}")
        hap = HAProxy(self.haproxy, self.setup_dir, cfg, setup)
        self.kube = None
        if setup.kube is not None:
            self.kube = KubeAPI(self.setup_dir)
            self.kube.start(self.deadline(20))
        hap.start(self.deadline(15))
        pods: list[Pod] = []
        threads: list[threading.Thread] = []
        errors: list[str] = []
        load = None
        try:
            # Bootstrap: R old pods, Ready, registered and healthy at the LB.
            old = [Pod(self, setup, f"s{setup.id}-old-{i + 1}") for i in range(cfg.replicas)]
            pods += old
            for p in old:
                p.start(self.deadline(10))
            for p in old:
                p.wait_ready(self.deadline(30 + cfg.slow_start))
                p.wait_serving(self.deadline(30 + cfg.slow_start))  # start from a settled state
                self.register(hap, p)
            self.wait_lb_up(hap, [p.name for p in old], self.deadline(30))

            polls = setup.long_polls
            load = LoadClient(hap.port, cfg, self.rate(setup), cfg.kube_workers if polls else None,
                              cfg.kube_request_timeout if polls else None)
            load.start()
            time.sleep(cfg.warmup)  # steady traffic before the roll (a duration, not a wait for state)

            # The roll: maxSurge 1, maxUnavailable 0.
            new: list[Pod] = []
            for i, victim in enumerate(old):
                p = Pod(self, setup, f"s{setup.id}-new-{i + 1}")
                pods.append(p)
                new.append(p)
                p.start(self.deadline(10))
                p.wait_ready(self.deadline(30 + cfg.slow_start))
                # Endpoints controller -> LB controller: the new endpoint
                # reaches the load balancer after a propagation delay.
                time.sleep(self.ep_delay(setup))
                self.register(hap, p)
                # Pod readiness gate (as the AWS Load Balancer Controller
                # sets one): the pod counts as available only once its
                # target is healthy at the load balancer. Without it, a
                # roll can outpace the LB's own health checks and leave it
                # with no healthy target, whatever the init does.
                self.wait_lb_up(hap, [p.name], self.deadline(30))
                # New pod available -> the old ReplicaSet scales down by one.
                threads += self.delete_pod(hap, victim, errors)

            for th in threads:
                th.join(timeout=max(0.0, self.t_end - time.monotonic()))
                if th.is_alive():
                    raise RigError(f"{th.name} did not finish within the run's time budget")
            if errors:
                raise RigError("; ".join(errors))
            time.sleep(cfg.tail)  # steady traffic after the roll
            load.stop()
        finally:
            if load is not None:
                load.stop_ev.set()
            hap.stop()
            for p in pods:
                p.kill()
            if self.kube is not None:
                self.kube.stop()
            PROCS.cleanup()
        return self.summarize(setup, load, old, new)

    def register(self, hap: HAProxy, p: Pod) -> None:
        """The pod's endpoint reaches the load balancer (and, with the API,
        its EndpointSlice is written)."""
        if self.kube is not None:
            self.kube.add_endpoint(p)
        hap.add_server(p)
        p.t_registered = time.time()

    def wait_lb_up(self, hap: HAProxy, names: list[str], deadline: float, needed: int | None = None) -> None:
        needed = len(names) if needed is None else needed
        while True:
            st = hap.server_states()
            up = [n for n in names if st.get(n) == 2]
            if len(up) >= needed:
                return
            if time.monotonic() > deadline:
                raise RigError(f"servers not UP at the load balancer: {st}")
            time.sleep(0.05)

    def delete_pod(self, hap: HAProxy, pod: Pod, errors: list[str]) -> list[threading.Thread]:
        """Pod deletion: two chains start at the same moment. The kubelet
        stops every container of the pod in parallel (a classic sidecar is
        just another container): each one's preStop hook, then its SIGTERM."""
        grace = self.grace(pod.setup)
        if self.kube is not None:
            # The deletion is in the API before the kubelet acts on it.
            grace = self.kube.delete_pod(pod.name, self.deletion_grace(pod.setup))
        pod.t_deleted = time.time()
        # The kubelet kills by the deletion's grace (without the API, the
        # pod's terminationGracePeriodSeconds).
        pod.t_grace_end = pod.t_deleted + grace
        log(f"  delete {pod.name}" + (f" (grace {grace:g}s)" if self.kube else ""))
        threads = [threading.Thread(target=self.endpoint_removal, args=(hap, pod, errors),
                                    name=f"ep-del-{pod.name}", daemon=True)]
        for c in pod.containers:
            threads.append(threading.Thread(target=self.kubelet_stop, args=(pod, c, errors),
                                            name=f"kubelet-{pod.name}-{c.role}", daemon=True))
        for th in threads:
            th.start()
        return threads

    def endpoint_removal(self, hap: HAProxy, pod: Pod, errors: list[str]) -> None:
        try:
            time.sleep(self.ep_delay(pod.setup))
            if self.kube is not None:
                # Taken before the write: drainit may see it before the
                # answer reaches the rig.
                pod.t_endpoint_removed = time.time()
                self.kube.remove_endpoint(pod)
            hap.deregister(pod.name)
            pod.t_deregistered = time.time()
            pod.del_server_ok = hap.delete_server(pod.name, time.monotonic() + 20)
        except Exception as e:
            errors.append(f"deregistering {pod.name}: {e}")

    def kubelet_stop(self, pod: Pod, c: Container, errors: list[str]) -> None:
        """The kubelet's stop of one container. The setup's preStop hook
        belongs to the app container (its httpGet targets the admin port:
        drainit in the same container, or the sidecar's); the sidecar
        container has none and gets SIGTERM at once."""
        cfg = self.cfg
        try:
            grace = self.grace(pod.setup)
            grace_end = pod.t_grace_end
            prestop = pod.setup.prestop if c.role == "app" else None
            if prestop == "http":
                conn = http.client.HTTPConnection(HOST, pod.admin_port, timeout=grace)
                try:
                    conn.request("GET", "/prestop")
                    r = conn.getresponse()
                    r.read()
                    c.prestop_result = f"http {r.status}"
                except (OSError, http.client.HTTPException) as e:
                    c.prestop_result = f"error {type(e).__name__}: {e}"
                finally:
                    conn.close()
            elif prestop == "sleep":
                # exec hook: `sleep D` run inside the container's namespaces
                rc = PROCS.run(["nsenter", "-t", str(c.pid1), "-p", "-m", "sleep",
                                str(cfg.delay)], timeout=grace)
                c.prestop_result = f"exec rc {rc}"
            # The hook has returned (or there is none): SIGTERM to PID 1.
            c.t_sigterm = time.time()
            c.signal_pid1(signal.SIGTERM)
            # After the grace period (at least 2 s after SIGTERM, as the
            # kubelet grants when a hook overran), SIGKILL.
            if not c.wait_exit(max(grace_end, c.t_sigterm + 2.0)):
                c.killed = True
                c.signal_pid1(signal.SIGKILL)
                if not c.wait_exit(time.time() + 10):
                    errors.append(f"{pod.name} ({c.role}) survived SIGKILL")
        except Exception as e:
            errors.append(f"kubelet for {pod.name} ({c.role}): {e}")

    # -- statistics -------------------------------------------------------
    def summarize(self, setup: Setup, load: LoadClient, old: list[Pod], new: list[Pod]) -> dict:
        t0 = load.t0
        recs = sorted(load.records)
        kinds: dict[str, int] = {}
        for _, _, k, _ in recs:
            if k != "ok":
                kinds[k] = kinds.get(k, 0) + 1
        n = len(recs)
        failed = sum(kinds.values())
        last_ok: dict[str, float] = {}
        for _, t_done, k, pod in recs:
            if k == "ok" and pod:
                last_ok[pod] = max(last_ok.get(pod, 0.0), t_done)
        terms, lingers, served_after = [], [], 0
        deregs, stopped_after, ends = [], [], {}
        pods_out = []
        events = []
        for p in old:
            t_stop = p.app_stop_time()
            dt = p.drain_traffic()
            if p.t_deregistered:
                deregs.append(p.t_deregistered - p.t_deleted)
            if dt and dt["observed"]:
                ends[dt["reason"]] = ends.get(dt["reason"], 0) + 1
                if dt["traffic_stopped"] is not None:
                    stopped_after.append(dt["traffic_stopped"] - p.t_deleted)
            elif dt:
                ends["not observed"] = ends.get("not observed", 0) + 1
            after = sum(1 for ts, _, k, pod in recs if k == "ok" and pod == p.name and ts > p.t_deleted)
            served_after += after
            term = p.t_exit - p.t_deleted
            terms.append(term)
            linger = p.t_exit - last_ok[p.name] if p.name in last_ok else None
            if linger is not None:
                lingers.append(linger)
            pods_out.append({
                "name": p.name,
                "termination_s": round(term, 3),
                "linger_s": None if linger is None else round(linger, 3),
                "served_after_delete": after,
                "deleted": round(p.t_deleted - t0, 3),
                "deregistered": rel(p.t_deregistered, t0),
                "kubelet_sigterm": rel(p.t_sigterm, t0),
                "app_stop_signal": rel(t_stop, t0),
                "exited": rel(p.t_exit, t0),
                "killed": p.killed,
                "prestop": p.prestop_result,
                "del_server_ok": p.del_server_ok,
            })
            if dt:
                pods_out[-1]["drain_traffic"] = dict(
                    dt, drain_started=rel(dt["drain_started"], t0),
                    traffic_stopped=rel(dt["traffic_stopped"], t0))
                if dt["traffic_stopped"]:
                    events.append({"t": rel(dt["traffic_stopped"], t0), "kind": "traffic_stopped",
                                   "pod": p.name})
            # What the pod really got before its deletion (up to 10 s), next to
            # the rate drainit estimated (its drain-traffic line).
            since = max(p.t_registered or t0, t0, p.t_deleted - 10.0)
            before = sum(1 for ts, _, k, pod in recs
                         if pod == p.name and k == "ok" and since <= ts < p.t_deleted)
            pods_out[-1]["requests_per_s_before_delete"] = (
                round(before / (p.t_deleted - since), 2) if p.t_deleted > since else None)
            if setup.auto:
                # This pod's requests per 100 ms (by send time, as answered
                # by it), from 3 s before its deletion to 1 s after its exit:
                # the picture of one drain.
                a = p.t_deleted - 3.0
                nb = int((p.t_exit + 1.0 - a) / 0.1) + 1
                mine = [0] * nb
                for ts, _, k, pod in recs:
                    if pod == p.name and k == "ok" and a <= ts < a + nb * 0.1:
                        mine[int((ts - a) / 0.1)] += 1
                pods_out[-1]["own_requests_100ms"] = {"from": rel(a, t0), "counts": mine}
            if setup.kube is not None:
                pods_out[-1].update(self.kube_figures(p, recs, t_stop, dt, t0))
            if p.sidecar:
                pods_out[-1]["containers"] = [{
                    "role": c.role,
                    "prestop": c.prestop_result,
                    "sigterm": rel(c.t_sigterm, t0),
                    "exited": rel(c.t_exit, t0),
                    "exit_code": c.exit_code(),
                    "killed": c.killed,
                } for c in p.containers]
            events.append({"t": round(p.t_deleted - t0, 3), "kind": "deleted", "pod": p.name})
            if p.t_deregistered:
                events.append({"t": rel(p.t_deregistered, t0), "kind": "deregistered", "pod": p.name})
            if t_stop:
                events.append({"t": rel(t_stop, t0), "kind": "stop_signal", "pod": p.name})
            events.append({"t": rel(p.t_exit, t0), "kind": "exited", "pod": p.name})
        for p in new:
            if p.t_registered:
                events.append({"t": rel(p.t_registered, t0), "kind": "registered", "pod": p.name})
        events.sort(key=lambda e: e["t"])
        # Requests per 100 ms by outcome (by send time).
        duration = (recs[-1][0] - t0) if recs else 0.0
        nb = int(duration / 0.1) + 1
        buckets = {"ok": [0] * nb, "http": [0] * nb, "transport": [0] * nb}
        for ts, _, k, _ in recs:
            b = min(nb - 1, max(0, int((ts - t0) / 0.1)))
            buckets["ok" if k == "ok" else "http" if k.startswith("http_") else "transport"][b] += 1
        kube = [x["kube"] for x in pods_out if "kube" in x]
        res = {
            "id": setup.id,
            "name": setup.name,
            "drainit": setup.drainit_setup,
            "requests": n,
            "ok": n - failed,
            "failed": failed,
            "failures_by_kind": kinds,
            "success_ratio": round((n - failed) / n, 6) if n else 0.0,
            "termination_s": stat(terms),
            "linger_s": stat(lingers),
            "deregistration_s": stat(deregs),
            "rate_before_drainit_per_s": stat([x["drain_traffic"]["rate_before_per_s"] or 0.0
                                               for x in pods_out if x.get("drain_traffic")]),
            "rate_before_real_per_s": stat([x["requests_per_s_before_delete"] for x in pods_out
                                            if x.get("requests_per_s_before_delete") is not None]),
            "traffic_stopped_after_s": stat(stopped_after),
            "delay_ends": ends,
            "delay": setup.delay,
            "auto": setup.auto,
            "pair": setup.pair,
            "rate": self.rate(setup),
            "ep_delay_range_s": list(self.ep_range(setup)),
            "ceiling_s": None if setup.delay == "D" else self.cfg.ceiling,
            "served_after_delete": served_after,
            "forced_kills": sum(1 for p in old if p.killed),
            # Sidecars that did not end with exit 0 (a SIGKILLed one included).
            "sidecar_exit_nonzero": sum(1 for p in old if p.sidecar
                                        and (p.sidecar.killed or p.sidecar.exit_code() != 0)),
            "duration_s": round(duration, 3),
            "pods": pods_out,
            "events": events,
            "buckets_100ms": buckets,
            "kube": setup.kube,
            "kube_summary": self.kube_summary(kube) if setup.kube is not None else None,
        }
        log(f"  -> {n} requests, {failed} failed {kinds or ''}, termination mean "
            f"{res['termination_s']['mean']}s max {res['termination_s']['max']}s, linger mean "
            f"{res['linger_s']['mean']}s, deregistration mean {res['deregistration_s']['mean']}s"
            + (f", delay ends {ends}" if ends else ""))
        return res


    def kube_figures(self, p: Pod, recs: list, t_stop: float | None, dt: dict | None,
                     t0: float) -> dict:
        """One pod's drain next to what the API knew: the kubelet's kill
        moment (the deletion's grace), the app's stop signal, the requests
        in flight at that signal (answered in full by this pod), the
        EndpointSlice removal the rig wrote and the one drainit reported,
        and the DrainEnded Event's message."""
        inflight = (0 if t_stop is None else
                    sum(1 for ts, td, k, pod in recs
                        if k == "ok" and pod == p.name and ts < t_stop < td))
        # Failed requests (a failure names no pod) sent before this pod's
        # kill and ended within a second after it: cut by the SIGKILL.
        cut = (0 if not p.killed else
               sum(1 for ts, td, k, _ in recs
                   if k != "ok" and ts < p.t_grace_end <= td < p.t_grace_end + 1.0))
        seen = None
        if dt and dt.get("drain_started") is not None:
            m = re.search(r"endpoint removed at ([0-9.]+) ?s", dt["text"])
            if m:
                seen = dt["drain_started"] + float(m.group(1))
        events = self.kube.events(p.name) if self.kube else []
        ended = [e for e in events if e.get("reason") == "DrainEnded"]
        try:
            text = p.app.log_path.read_text(errors="replace")
        except OSError:
            text = ""
        return {"kube": {
            # drainit's own lines: it took the API into use at its start,
            # and it kept the delay going for the endpoint's removal.
            "api_in_use": "Kubernetes API in use" in text,
            "held_for_endpoint": "the endpoint's removal is not seen yet" in text,
            "kill_at": rel(p.t_grace_end, t0),
            "deletion_grace_s": round(p.t_grace_end - p.t_deleted, 3),
            "stop_before_kill_s": None if t_stop is None else round(p.t_grace_end - t_stop, 3),
            "inflight_at_stop": inflight,
            "cut_at_kill": cut,
            "endpoint_removed": rel(p.t_endpoint_removed, t0),
            "endpoint_removed_seen": rel(seen, t0),
            "stop_after_endpoint_removed_s": (None if t_stop is None or p.t_endpoint_removed is None
                                              else round(t_stop - p.t_endpoint_removed, 3)),
            "event_reasons": [e.get("reason") for e in events],
            "drain_ended_event": ended[-1].get("message") if ended else None,
        }}

    def kube_summary(self, pods: list[dict]) -> dict:
        def least(key):
            xs = [x[key] for x in pods if x[key] is not None]
            return None if len(xs) < len(pods) or not xs else min(xs)
        return {
            "stop_before_kill_min_s": least("stop_before_kill_s"),
            "no_stop_signal": sum(1 for x in pods if x["stop_before_kill_s"] is None),
            "inflight_at_stop": sum(x["inflight_at_stop"] for x in pods),
            "cut_at_kill": sum(x["cut_at_kill"] for x in pods),
            "stop_after_endpoint_removed_min_s": least("stop_after_endpoint_removed_s"),
            "removal_seen": sum(1 for x in pods if x["endpoint_removed_seen"] is not None),
            "held_for_endpoint": sum(1 for x in pods if x["held_for_endpoint"]),
            "api_in_use": sum(1 for x in pods if x["api_in_use"]),
            "drain_ended_events": sum(1 for x in pods if x["drain_ended_event"]),
            "drainit_api_requests": self.kube.drainit_requests() if self.kube else 0,
        }


def rel(t: float | None, t0: float) -> float | None:
    return None if t is None else round(t - t0, 3)


def stat(xs: list[float]) -> dict:
    if not xs:
        return {"mean": None, "max": None, "values": []}
    return {"mean": round(sum(xs) / len(xs), 3), "max": round(max(xs), 3),
            "values": [round(x, 3) for x in xs]}


# ---------------------------------------------------------------------------
# Report: Markdown table + SVG timeline
# ---------------------------------------------------------------------------


def fmt_s(x) -> str:
    return "–" if x is None else f"{x:.2f}"


def markdown_table(results: list[dict]) -> str:
    rows = ["| # | setup | requests | failed | failures by kind | success | termination mean / max (s) "
            "| linger after last request mean / max (s) | served after deletion |",
            "|---|---|---:|---:|---|---:|---:|---:|---:|"]
    for r in results:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(r["failures_by_kind"].items())) or "–"
        rows.append(
            f"| {r['id']} | {r['name']} | {r['requests']} | {r['failed']} | {kinds} | "
            f"{100 * r['success_ratio']:.2f} % | {fmt_s(r['termination_s']['mean'])} / "
            f"{fmt_s(r['termination_s']['max'])} | {fmt_s(r['linger_s']['mean'])} / "
            f"{fmt_s(r['linger_s']['max'])} | {r['served_after_delete']} |")
    return "\n".join(rows)


def evidence_table(results: list[dict]) -> str:
    """Fixed delay at the ceiling next to `auto` with the same ceiling, one
    row per scenario (setups 8-13)."""
    by_id = {r["id"]: r for r in results}
    rows = ["| # | scenario | deregistration mean (s) | fixed: failed | fixed: termination mean / max (s) "
            "| fixed: linger mean / max (s) | auto: failed | auto: termination mean / max (s) "
            "| auto: linger mean / max (s) | auto: traffic stopped after, mean (s) "
            "| rate before the drain per pod: drainit's λ̂ / real (req/s) "
            "| auto: delay ended | target: auto termination ≤ deregistration + 2 s |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    pairs = []
    for r in results:
        if r.get("auto") and r["pair"] not in pairs:
            pairs.append(r["pair"])
    for pid in pairs:
        a = by_id.get(f"{pid}a")
        f = by_id.get(f"{pid}f") or by_id.get(f"{FIXED_TWIN.get(pid, '')}f")
        if a is None:
            continue
        twin = f" (fixed: {f['id']})" if f is not None and f["pair"] != pid else ""

        def cells(r):
            if r is None:
                return "–", "–", "–"
            return (str(r["failed"]),
                    f"{fmt_s(r['termination_s']['mean'])} / {fmt_s(r['termination_s']['max'])}",
                    f"{fmt_s(r['linger_s']['mean'])} / {fmt_s(r['linger_s']['max'])}")
        ff, ft, fl = cells(f)
        af, at, al = cells(a)
        ends = ", ".join(f"{k} {v}" for k, v in sorted(a["delay_ends"].items())) or "–"
        dereg = a["deregistration_s"]["mean"]
        term = a["termination_s"]["mean"]
        if a["rate"] < 200 or dereg is None or term is None:
            target = "none at this rate (0 failed; may wait to the ceiling)"
        else:
            bound = dereg + 2.0
            target = (f"met: {term:.2f} ≤ {bound:.2f}" if term <= bound
                      else f"**missed**: {term:.2f} > {bound:.2f}")
        rows.append(f"| {pid} | {PAIR_NAMES[pid]}{twin} | {fmt_s(dereg)} | {ff} | {ft} | {fl} | "
                    f"**{af}** | {at} | {al} | {fmt_s(a['traffic_stopped_after_s']['mean'])} | "
                    f"{fmt_s(a['rate_before_drainit_per_s']['mean'])} / "
                    f"{fmt_s(a['rate_before_real_per_s']['mean'])} | "
                    f"{ends} | {target} |")
    return "\n".join(rows)


def pick_drain(results: list[dict]) -> tuple[dict, dict] | None:
    """The one auto drain the picture shows: the middle old pod of the fast
    balancer's keep-alive setup (11a), else of the first auto setup."""
    autos = [r for r in results if r.get("auto")]
    if not autos:
        return None
    r = next((r for r in autos if r["id"] == "11a"), autos[0])
    pods = [p for p in r["pods"] if p.get("own_requests_100ms") and p.get("drain_traffic")]
    if not pods:
        return None
    return r, pods[len(pods) // 2]


def svg_one_drain(r: dict, pod: dict, cfg: Config) -> str:
    """Requests per 100 ms to one pod around its auto drain, with the moment
    the traffic stopped (drainit's drain-traffic line) and the moment the
    stop signal went out."""
    W, left, right, top, ph = 1000, 70, 30, 80, 240
    pw = W - left - right
    b = pod["own_requests_100ms"]
    t_from = b["from"]
    dt = pod["drain_traffic"]
    deleted = pod["deleted"]
    fixed_stop = deleted + cfg.ceiling
    t_to = max(t_from + len(b["counts"]) * 0.1, fixed_stop + 1.0)
    span = t_to - t_from
    xs = lambda t: left + pw * (t - t_from) / span
    ymax = max([1] + b["counts"])
    yb = top + ph
    H = yb + 70
    title = (f"One drain with --propagation-delay auto (setup {r['id']}, pod {pod['name']}): "
             f"requests per 100 ms to that pod")
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{left}" y="18" font-size="14" font-weight="bold">{esc(title)}</text>',
           f'<text x="{left}" y="36">{esc(r["name"])}; {r["requests"]} requests in the setup, '
           f'{r["failed"]} failed. drainit\'s drain-traffic line:</text>']
    # The line in two halves, at its "; delay ended:".
    head, sep, rest = dt["text"].partition("; delay ended:")
    out.append(f'<text x="{left}" y="50" font-family="monospace" font-size="10">{esc(head + sep[:1])}</text>')
    if sep:
        out.append(f'<text x="{left}" y="63" font-family="monospace" font-size="10">'
                   f'{esc(sep[2:] + rest)}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#f7f7f7" stroke="#ccc"/>')
    bw = max(pw * 0.1 / span - 0.6, 0.5)
    for j, v in enumerate(b["counts"]):
        if v:
            h = ph * v / ymax
            out.append(f'<rect x="{xs(t_from + j * 0.1):.2f}" y="{yb - h:.2f}" width="{bw:.2f}" '
                       f'height="{h:.2f}" fill="#2ca02c"/>')
    stop = pod["app_stop_signal"]
    stopped = dt.get("traffic_stopped")
    if stopped is not None and stop is not None:
        # The quiet that ended the delay.
        out.append(f'<rect x="{xs(stopped):.2f}" y="{top}" width="{xs(stop) - xs(stopped):.2f}" '
                   f'height="{ph}" fill="#e377c2" fill-opacity="0.12"/>')
    marks = [(deleted, "#000000", "pod deleted (SIGTERM to drainit)", ""),
             (pod["deregistered"], "#1f77b4", "deregistered at HAProxy", ' stroke-dasharray="5,3"'),
             (stopped, "#e377c2", "traffic stopped (drainit's report)", ""),
             (stop, "#9467bd", "stop signal to the app (auto)", ' stroke-dasharray="2,2"'),
             (fixed_stop, "#7f7f7f", f"stop signal with a fixed {cfg.ceiling:g} s delay",
              ' stroke-dasharray="6,4"')]
    for i, (t, color, label, dash_) in enumerate(marks):
        if t is None:
            continue
        x = xs(t)
        out.append(f'<line x1="{x:.2f}" y1="{top - 4}" x2="{x:.2f}" y2="{yb}" stroke="{color}" '
                   f'stroke-width="2"{dash_}><title>{esc(label)} at {t - deleted:.2f} s after '
                   f'deletion</title></line>')
        ly = top + 14 + 14 * i
        anchor, lx = ("end", x - 4) if x > left + pw * 0.8 else ("start", x + 4)
        out.append(f'<text x="{lx:.2f}" y="{ly}" fill="{color}" text-anchor="{anchor}">'
                   f'{esc(label)}: {t - deleted:+.2f} s</text>')
    out.append(f'<text x="{left - 6}" y="{top + 10}" text-anchor="end">{ymax}</text>')
    out.append(f'<text x="{left - 6}" y="{yb}" text-anchor="end">0</text>')
    first = math.ceil(t_from - deleted)
    for k in range(first, int(t_to - deleted) + 1):
        x = xs(deleted + k)
        if x < left or x > left + pw:
            continue
        out.append(f'<line x1="{x:.2f}" y1="{yb}" x2="{x:.2f}" y2="{yb + 4}" stroke="#333"/>')
        if k % 2 == 0:
            out.append(f'<text x="{x:.2f}" y="{yb + 16}" text-anchor="middle">{k}s</text>')
    out.append(f'<text x="{left + pw / 2}" y="{yb + 34}" text-anchor="middle">seconds after the '
               f'pod\'s deletion; shaded: the quiet that ended the delay</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def evidence_section(evidence: list[dict], cfg: Config, one) -> list[str]:
    c = cfg
    md = [
        f"## Drain on evidence: a fixed {c.ceiling:g} s delay vs `--propagation-delay auto` "
        f"(ceiling {c.ceiling:g} s)",
        "",
        f"Setups 8–13: drainit as ENTRYPOINT (no preStop), the readiness probe and HAProxy's "
        f"health check on drainit's `/ready` (the admin port, which drainit never counts as "
        f"traffic), grace period {c.ceiling_grace:g} s. Each scenario runs with a fixed "
        f"`--propagation-delay {fmt_dur(c.ceiling)}` (\"f\") and with `--propagation-delay auto "
        f"--propagation-delay-max {fmt_dur(c.ceiling)}` (\"a\"; floor and window by default), "
        f"the same ceiling. Fast balancer: endpoint changes reach HAProxy "
        f"{c.ep_delay_min:g}–{c.ep_delay_max:g} s after the pod event; slow: "
        f"{c.slow_ep_delay_min:g}–{c.slow_ep_delay_max:g} s, and no HAProxy health check, "
        f"so that only the endpoint removal takes the pod out (kube-proxy; a cloud load "
        f"balancer whose health checks are slower than its deregistration). Low traffic: {c.low_rate:g} "
        f"req/s in all (about {c.low_rate / c.replicas:.1f} per pod). The rig's pods share the "
        f"host's network namespace (each has its own PID namespace only), so drainit is given "
        f"`--traffic-ports <the pod's app port>`: in a real pod the default (every listening "
        f"port but drainit's admin port) is that same port.",
        "",
        "How HAProxy holds its backend connections matters to `auto`. Setups 8–10 keep the "
        "rig's HAProxy of setups 1–7: a server added through the runtime API keeps no idle "
        "connection (`pool-max-conn 0` is the default of `add server`), so every request gets a "
        "new backend connection, which HAProxy closes itself right after the response. "
        f"Setups 11–13 let HAProxy keep them, as ingress proxies and cloud load balancers keep "
        f"upstream keep-alive connections: `http-reuse always`, `pool-max-conn -1`, "
        f"`pool-purge-delay {fmt_dur(c.reuse_purge)}`; the connections stay open, idle, "
        f"after the pod's deregistration until the app closes them at its stop signal.",
        "",
        evidence_table(evidence),
        "",
        "Termination: pod deletion to the exit of its PID 1. Linger: exit minus the end of the "
        "last request the pod served. Deregistration: deletion to the endpoint removal reaching "
        "HAProxy (HAProxy's own health check on `/ready`, 503 from the drain's start, usually "
        "takes the pod out of rotation before that: fall "
        f"{c.lb_fall} × inter {c.lb_inter_ms} ms). Traffic stopped after: drainit's own "
        "report (the later of its last new connection and last inbound byte, from the drain's "
        "start). Rate before the drain: the λ̂ in drainit's drain-traffic line next to the "
        "requests/s the rig saw the pod answer in the 10 s before its deletion. Every pod's "
        "drain-traffic line is in results.json (`pods[].drain_traffic.text`).",
        "",
    ]
    reuse = {s.id for s in SETUPS if s.reuse}
    per_request_ceiling = [r for r in evidence if r.get("auto") and r["id"] not in reuse
                           and r["delay_ends"].get("ceiling")]
    if per_request_ceiling:
        ids = ", ".join(r["id"] for r in per_request_ceiling)
        seen = ", ".join(f"{fmt_s(r['rate_before_drainit_per_s']['mean'])}"
                         for r in per_request_ceiling)
        real = ", ".join(f"{fmt_s(r['rate_before_real_per_s']['mean'])}"
                         for r in per_request_ceiling)
        md += [
            f"**Why {ids} waited to the ceiling.** With a connection per request closed by the "
            "balancer, drainit sees almost none of the traffic: it dumps the sockets every 1 s "
            "while the app runs (every 100 ms in a drain), and a connection opened and closed by "
            "its client between two dumps leaves no trace (the app's side ends in LAST_ACK, not "
            "TIME_WAIT; src/traffic.rs calls these \"not seen\"). drainit's λ̂ before the drain "
            f"was {seen} arrivals/s per pod where the pods answered {real} requests/s, so the "
            "window 13.8/λ̂ came out longer than the ceiling and the delay ran to it (the "
            f"drain-traffic lines say `ceiling after {c.ceiling:.1f} s; window … from … arrivals/s`). That "
            "is the safe side (0 failed: an underestimated rate only lengthens the window), but "
            "`auto` gains nothing there; the fixed twin is as good.",
            "",
        ]
    md += [f"![fixed vs auto, requests per 100 ms](timeline-auto.svg)", ""]
    if one:
        r, pod = one
        md += [
            f"One auto drain (setup {r['id']}, pod {pod['name']}): requests per 100 ms to that "
            f"pod, the moment drainit saw its traffic stop, and the stop signal:",
            "",
            "![one auto drain](auto-drain.svg)",
            "",
        ]
    return md


def kube_section(results: list[dict]) -> list[str]:
    """The API setups: the deadline the kubelet kills by, the app's stop
    signal, the endpoint's removal and the drain's Event, per pod."""
    md = ["## The control plane behind the Kubernetes API", "",
          markdown_table(results), "",
          "| setup | pod | kubelet's kill (s after deletion) | app's stop signal before it (s) "
          "| requests in flight at the stop, answered | killed | requests cut by the kill | EndpointSlice removal / seen by "
          "drainit (s into the run) | DrainEnded Event |",
          "|---|---|---:|---:|---:|---|---:|---|---|"]
    for r in results:
        for p in r["pods"]:
            k = p["kube"]
            md.append(f"| {r['id']} | {p['name']} | {k['deletion_grace_s']:g} | "
                      f"{fmt_s(k['stop_before_kill_s'])} | {k['inflight_at_stop']} | "
                      f"{'yes' if p['killed'] else 'no'} | {k['cut_at_kill']} | "
                      f"{fmt_s(k['endpoint_removed'])} / "
                      f"{fmt_s(k['endpoint_removed_seen'])} | {esc(k['drain_ended_event'] or '–')} |")
    return md + ["", "![timeline](timeline-kube.svg)", ""]


def write_report(outdir: Path, cfg: Config, results: list[dict], meta: dict) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    fixed_d = [r for r in results if r.get("delay", "D") == "D" and not r.get("kube")]
    evidence = [r for r in results if r.get("delay", "D") != "D" and not r.get("kube")]
    with_api = [r for r in results if r.get("kube")]
    if fixed_d:
        (outdir / "timeline.svg").write_text(svg_timeline(fixed_d, cfg))
    if evidence:
        (outdir / "timeline-auto.svg").write_text(svg_timeline(
            evidence, cfg, f"fixed {cfg.ceiling:g} s vs auto (max {cfg.ceiling:g} s)"))
    if with_api:
        (outdir / "timeline-kube.svg").write_text(svg_timeline(
            with_api, cfg, "the control plane behind the Kubernetes API emulation"))
    one = pick_drain(evidence)
    if one:
        (outdir / "auto-drain.svg").write_text(svg_one_drain(one[0], one[1], cfg))
    c = cfg
    md = [
        "# drainit rollout report",
        "",
        f"Generated by `python3 tests/rollout/rig.py {meta['argv']}` on {meta['date']} "
        f"({meta['haproxy']}, {meta['tini']}, {meta['drainit']}).",
        "",
        f"Rolling update of {c.replicas} replicas (maxSurge 1, maxUnavailable 0) behind HAProxy "
        f"(`option httpchk`, inter {c.lb_inter_ms} ms, fall {c.lb_fall}, rise {c.lb_rise}, "
        f"`retries 0`, no redispatch), {c.rate:.0f} requests/s over {c.workers} keep-alive "
        f"connections. Endpoint changes reach HAProxy {c.ep_delay_min:g}–{c.ep_delay_max:g} s "
        f"after the pod event. D = {c.delay:g} s (drainit `--propagation-delay`, preStop "
        f"`sleep D`), grace period {c.grace:g} s. Slow-start app: {c.slow_start:g} s before "
        f"it listens; setup 6 has no load-balancer health checks (kube-proxy-like), so only "
        f"pod readiness gates traffic. Setup 7 is a pod of two containers (each its own PID "
        f"namespace, one loopback): the app under tini, whose preStop `httpGet` calls "
        f"`/prestop` on a classic `drainit sidecar` container; at deletion the kubelet stops "
        f"both in parallel (the app: hook, then SIGTERM; the sidecar: SIGTERM at once).",
        "",
        markdown_table(fixed_d),
        "",
        "Termination: pod deletion to exit of the pod's PID 1 (setup 7: of the last of its two "
        "containers, the sidecar, which learns that the app is gone from its next "
        "`--ready-check`, every 200 ms here). Linger: exit minus the end of the "
        "last request the pod served. Served after deletion: successful requests the pod "
        "answered after it was deleted (traffic that would fail had it stopped at once).",
        "",
        "![timeline](timeline.svg)" if fixed_d else "",
        "",
    ]
    if evidence:
        md += evidence_section(evidence, cfg, one)
    if with_api:
        md += kube_section(with_api)
    md += [
        "## Setups",
        "",
        "| # | PID 1 of the pod's container(s) | preStop | readiness probe | HAProxy health check |",
        "|---|---|---|---|---|",
    ]
    where = {"app": "app `/healthz`", "admin": "drainit `/ready`", None: "none"}
    where_sidecar = dict(where, admin="sidecar `/ready`")
    by_id = {s.id: s for s in SETUPS}
    for r in results:
        s = by_id[r["id"]]
        pid1 = {"none": "the app", "tini": "tini", "drainit": "drainit"}[s.init]
        if s.auto:
            drainit_flags = f" `--propagation-delay auto --propagation-delay-max {fmt_dur(c.ceiling)}`"
        else:
            fixed = {"D": c.delay, "kube": c.kube_delay}.get(s.delay, c.ceiling)
            drainit_flags = f" `--propagation-delay {fmt_dur(fixed)}`"
        if s.kube == "off":
            drainit_flags += " `--kubernetes off`"
        if s.ready_check:
            drainit_flags += " `--ready-check http://…/healthz`"
        if s.init == "drainit":
            pid1 += drainit_flags
        if s.slow:
            pid1 += f" (app starts in {c.slow_start:g} s)"
        if s.short_deletion:
            pid1 += (f" `--kill-margin {fmt_dur(c.kube_kill_margin)}`; grace {c.grace:g} s, "
                     f"deleted with `--grace-period={c.kube_deletion_grace:g}`; "
                     f"{c.kube_rate:g} req/s, long polls held {c.kube_hold_ms / 1000:g} s "
                     "(answered at the app's stop signal)")
        elif s.delay != "D":
            lo, hi = {"slow": (c.slow_ep_delay_min, c.slow_ep_delay_max),
                      "late": (c.late_ep_delay_min, c.late_ep_delay_max)}.get(
                          s.balancer, (c.ep_delay_min, c.ep_delay_max))
            pid1 += (f"; grace {c.ceiling_grace:g} s; balancer {lo:g}–{hi:g} s; "
                     f"{c.low_rate if s.traffic == 'low' else c.rate:g} req/s; "
                     + ("keep-alive connections to the backends" if s.reuse
                        else "a connection per request"))
        prestop = {None: "none", "sleep": f"`exec sleep {c.delay:g}`",
                   "http": "`httpGet /prestop`"}[s.prestop]
        w = where
        if s.sidecar:
            pid1 = f"app container: {pid1}; sidecar container: drainit{drainit_flags} `sidecar`"
            prestop += " (app container, to the sidecar)"
            w = where_sidecar
        md.append(f"| {s.id} | {pid1} | {prestop} | {w[s.probe]} | {w[s.lb_check]} |")
    md += [
        "",
        "A new pod counts as available once its readiness probe passes and its target is "
        "healthy at HAProxy (a pod readiness gate, as the AWS Load Balancer Controller "
        "sets), then one old pod is deleted: the endpoint removal (reaching HAProxy after "
        "the propagation delay) and the kubelet's sequence (preStop, SIGTERM to PID 1, "
        "SIGKILL at the grace period; for each container of the pod in parallel) start at the "
        "same moment. Per-pod figures (per container for setup 7) are in results.json.",
        "",
    ]
    (outdir / "report.md").write_text("\n".join(md))
    (outdir / "results.json").write_text(json.dumps(
        {"config": dataclasses.asdict(cfg), "meta": meta, "setups": results}, indent=1))


def svg_timeline(results: list[dict], cfg: Config, what: str | None = None) -> str:
    W, left, right = 1000, 70, 20
    ph, gap, top = 110, 46, 50
    pw = W - left - right
    tmax = max((r["duration_s"] for r in results), default=1.0) or 1.0
    tmax = math.ceil(tmax)
    ymax = max([1] + [o + h + t for r in results for o, h, t in
                      zip(r["buckets_100ms"]["ok"], r["buckets_100ms"]["http"],
                          r["buckets_100ms"]["transport"])])
    H = top + len(results) * (ph + gap) + 10
    xs = lambda t: left + pw * t / tmax
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{left}" y="18" font-size="14" font-weight="bold">Requests per 100 ms during '
           f'a rolling update ({cfg.replicas} replicas, '
           f'{what or f"{cfg.rate:.0f} req/s, D = {cfg.delay:g} s"})</text>']
    legend = [("#2ca02c", "ok", "rect"), ("#d62728", "HTTP error (502/503)", "rect"),
              ("#ff7f0e", "transport error", "rect"), ("#000000", "pod deleted", "line"),
              ("#1f77b4", "deregistered at LB", "line"), ("#9467bd", "app got stop signal", "line"),
              ("#e377c2", "traffic stopped (drainit)", "line"),
              ("#7f7f7f", "new pod registered", "tick")]
    lx = left
    for color, label, shape in legend:
        if shape == "rect":
            out.append(f'<rect x="{lx}" y="28" width="10" height="10" fill="{color}"/>')
        elif shape == "line":
            out.append(f'<line x1="{lx + 5}" y1="26" x2="{lx + 5}" y2="40" stroke="{color}" '
                       f'stroke-width="2"{dash(color)}/>')
        else:
            out.append(f'<path d="M{lx} 28 L{lx + 10} 28 L{lx + 5} 38 Z" fill="{color}"/>')
        out.append(f'<text x="{lx + 14}" y="37">{label}</text>')
        lx += 24 + 6.2 * len(label)
    bw = max(pw * 0.1 / tmax, 0.5)
    for i, r in enumerate(results):
        y0 = top + i * (ph + gap) + 22
        yb = y0 + ph
        fr = r["failed"]
        out.append(f'<text x="{left}" y="{y0 - 6}" font-weight="bold">{esc(r["id"])}. '
                   f'{esc(r["name"])} — {r["requests"]} requests, {fr} failed '
                   f'({100 * (1 - r["success_ratio"]):.2f} %), termination mean '
                   f'{fmt_s(r["termination_s"]["mean"])} s</text>')
        out.append(f'<rect x="{left}" y="{y0}" width="{pw}" height="{ph}" fill="#f7f7f7" stroke="#ccc"/>')
        b = r["buckets_100ms"]
        for j in range(len(b["ok"])):
            x = left + pw * (j * 0.1) / tmax
            y = yb
            for key, color in (("ok", "#2ca02c"), ("transport", "#ff7f0e"), ("http", "#d62728")):
                v = b[key][j]
                if v:
                    h = ph * v / ymax
                    y -= h
                    out.append(f'<rect x="{x:.2f}" y="{y:.2f}" width="{bw:.2f}" height="{h:.2f}" '
                               f'fill="{color}"/>')
        for e in r["events"]:
            if e["t"] is None:
                continue
            x = xs(e["t"])
            color = {"deleted": "#000000", "deregistered": "#1f77b4",
                     "stop_signal": "#9467bd", "traffic_stopped": "#e377c2"}.get(e["kind"])
            if color:
                out.append(f'<line x1="{x:.2f}" y1="{y0}" x2="{x:.2f}" y2="{yb}" stroke="{color}" '
                           f'stroke-width="1.5"{dash(color)}><title>{esc(e["pod"])} {e["kind"]} '
                           f'at {e["t"]:.2f}s</title></line>')
            elif e["kind"] == "registered":
                out.append(f'<path d="M{x - 4:.2f} {y0} L{x + 4:.2f} {y0} L{x:.2f} {y0 + 8} Z" '
                           f'fill="#7f7f7f"><title>{esc(e["pod"])} registered at {e["t"]:.2f}s'
                           f'</title></path>')
        # axes
        out.append(f'<text x="{left - 6}" y="{y0 + 10}" text-anchor="end">{ymax}</text>')
        out.append(f'<text x="{left - 6}" y="{yb}" text-anchor="end">0</text>')
        step = 1 if tmax <= 20 else 2 if tmax <= 40 else 5
        for t in range(0, tmax + 1, step):
            out.append(f'<line x1="{xs(t):.2f}" y1="{yb}" x2="{xs(t):.2f}" y2="{yb + 4}" stroke="#333"/>')
            out.append(f'<text x="{xs(t):.2f}" y="{yb + 15}" text-anchor="middle">{t}s</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def dash(color: str) -> str:
    return {"#1f77b4": ' stroke-dasharray="5,3"', "#9467bd": ' stroke-dasharray="2,2"'}.get(color, "")


def esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def version_of(argv: list[str]) -> str:
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (p.stdout or p.stderr).strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


def preflight(args, setups: list[Setup]) -> tuple[str, str | None, str | None]:
    problems = []
    if os.geteuid() != 0:
        problems.append("must run as root (each pod gets its own PID namespace via unshare)")
    haproxy = args.haproxy or shutil.which("haproxy") or ("/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy") else None)
    if not haproxy:
        problems.append("haproxy not found (Debian: apt-get install -y haproxy)")
    tini = None
    if any(s.init == "tini" for s in setups):
        tini = args.tini or shutil.which("tini")
        if not tini:
            problems.append("tini not found (Debian: apt-get install -y tini)")
    for tool in ("unshare", "nsenter"):
        if not shutil.which(tool):
            problems.append(f"{tool} not found (util-linux)")
    if any(s.kube for s in setups) and not shutil.which("openssl"):
        problems.append("openssl not found (Debian: apt-get install -y openssl), for the API setups' CA")
    drainit = None
    if any(s.init == "drainit" or s.sidecar for s in setups):
        drainit = args.drainit or str(ROOT / "target" / "debug" / "drainit")
        if not os.access(drainit, os.X_OK):
            problems.append(f"drainit binary not found at {drainit} (cargo build, or --drainit PATH)")
    if not problems:
        try:
            r = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"],
                               capture_output=True, text=True, timeout=10)
            if r.returncode != 0:
                problems.append(f"unshare --pid --fork --mount-proc fails here: {r.stderr.strip()}")
        except (OSError, subprocess.SubprocessError) as e:
            problems.append(f"unshare: {e}")
    if problems:
        raise RigError("cannot run the rollout rig:\n  - " + "\n  - ".join(problems))
    return haproxy, tini, drainit


def kube_result(r: dict) -> str:
    """The API setups' part of a RESULT line (-1: no figure)."""
    k = r.get("kube_summary")
    if not k:
        return ""
    val = lambda x: -1 if x is None else x
    return (f" kube={r['kube']} api_in_use={k['api_in_use']} stop_before_kill_min={val(k['stop_before_kill_min_s'])} "
            f"no_stop_signal={k['no_stop_signal']} inflight_at_stop={k['inflight_at_stop']} "
            f"cut_at_kill={k['cut_at_kill']} "
            f"stop_after_endpoint_removed_min={val(k['stop_after_endpoint_removed_min_s'])} "
            f"removal_seen={k['removal_seen']} held_for_endpoint={k['held_for_endpoint']} "
            f"drain_ended_events={k['drain_ended_events']} "
            f"drainit_api_requests={k['drainit_api_requests']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Rolling update behind HAProxy: count failed requests per setup.")
    ap.add_argument("--quick", action="store_true", help="small, short run (the cargo test's)")
    ap.add_argument("--quick-kube", action="store_true",
                    help="the quick run's sizes, the Kubernetes API setups only (tests/kube.rs): "
                    + ",".join(s.id for s in SETUPS if s.kube_quick))
    ap.add_argument("--report", metavar="DIR", help="write DIR/report.md and DIR/timeline.svg")
    ap.add_argument("--json", metavar="OUT", help="write the results as JSON")
    ap.add_argument("--setups", help="comma-separated setup ids (default: all; with --quick, "
                    "those of the quick run: " + ",".join(s.id for s in SETUPS if s.quick) + ")")
    ap.add_argument("--drainit", help="drainit binary (default: target/debug/drainit)")
    ap.add_argument("--tini", help="tini binary (default: from PATH)")
    ap.add_argument("--haproxy", help="haproxy binary (default: from PATH)")
    ap.add_argument("--replicas", type=int)
    ap.add_argument("--rate", type=float, help="requests per second")
    ap.add_argument("--delay", type=float, help="D, seconds (propagation delay / preStop sleep)")
    ap.add_argument("--ep-delay", metavar="MIN,MAX", help="endpoint propagation delay range, seconds")
    ap.add_argument("--grace", type=float, help="termination grace period, seconds")
    ap.add_argument("--max-seconds", type=float, help="time budget of the whole run")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--workdir", help="where pod and haproxy logs go (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (logs) after success")
    args = ap.parse_args(argv)

    cfg = Config.quick() if args.quick or args.quick_kube else Config()
    if args.quick_kube:
        cfg.max_seconds = 110.0  # three setups; tests/kube.rs allows 120 s
    if args.replicas is not None:
        cfg.replicas = args.replicas
    if args.rate is not None:
        cfg.rate = args.rate
    if args.delay is not None:
        cfg.delay = args.delay
    if args.ep_delay:
        a, b = (float(x) for x in args.ep_delay.split(","))
        cfg.ep_delay_min, cfg.ep_delay_max = a, b
    if args.grace is not None:
        cfg.grace = args.grace
    if args.max_seconds is not None:
        cfg.max_seconds = args.max_seconds
    cfg.seed = args.seed
    if not (1 <= cfg.replicas <= 10 and 1 <= cfg.rate <= 2000 and cfg.max_seconds <= 3600):
        raise RigError("out of bounds: replicas 1..10, rate 1..2000, max-seconds <= 3600")
    if not (0 <= cfg.ep_delay_min <= cfg.ep_delay_max <= 60 and 0 < cfg.delay <= 120):
        raise RigError("out of bounds: 0 <= ep-delay min <= max <= 60, 0 < delay <= 120")

    if args.setups is None and args.quick_kube:
        args.setups = ",".join(s.id for s in SETUPS if s.kube_quick)
    if args.setups is None:
        args.setups = ",".join(s.id for s in SETUPS if s.quick or not args.quick)
    wanted = [x.strip() for x in args.setups.split(",") if x.strip()]
    unknown = [w for w in wanted if w not in {s.id for s in SETUPS}]
    if unknown:
        raise RigError(f"unknown setup ids: {unknown}")
    setups = [s for s in SETUPS if s.id in wanted]

    haproxy, tini, drainit = preflight(args, setups)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)

    if args.workdir:
        workdir = Path(args.workdir)
        workdir.mkdir(parents=True, exist_ok=True)
    else:
        workdir = Path(tempfile.mkdtemp(prefix="drainit-rollout-"))
    log(f"work dir {workdir}; haproxy {haproxy}, tini {tini}, drainit {drainit}")
    rig = Rig(cfg, workdir, tini, drainit, haproxy)
    results = []
    ok = False
    try:
        for s in setups:
            results.append(rig.run_setup(s))
        ok = True
    finally:
        PROCS.cleanup()
        if not ok:
            log(f"FAILED; logs kept in {workdir}")

    meta = {
        "argv": " ".join(sys.argv[1:] if argv is None else argv),
        "date": time.strftime("%Y-%m-%d"),
        "haproxy": version_of([haproxy, "-v"]).split(" - ")[0],
        "tini": version_of([tini, "--version"]) if tini else "no tini",
        "drainit": version_of([drainit, "--version"]) if drainit else "drainit not run",
    }
    doc = {"config": dataclasses.asdict(cfg), "meta": meta, "setups": results}
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=1))
    if args.report:
        write_report(Path(args.report), cfg, results, meta)
        log(f"report written to {args.report}/report.md and timeline.svg")
    # One line per setup, easy to parse without a JSON library.
    by_id = {s.id: s for s in SETUPS}
    for r in results:
        print(f"RESULT setup={r['id']} drainit={int(r['drainit'])} requests={r['requests']} "
              f"failed={r['failed']} term_mean={r['termination_s']['mean']} "
              f"term_max={r['termination_s']['max']} linger_mean={r['linger_s']['mean']} "
              f"served_after_delete={r['served_after_delete']} forced_kills={r['forced_kills']} "
              f"sidecar={int(by_id[r['id']].sidecar)} "
              f"sidecar_exit_nonzero={r['sidecar_exit_nonzero']} "
              f"auto={int(r['auto'])} ceiling={r['ceiling_s'] or 0} "
              f"linger_max={r['linger_s']['max']} dereg_mean={r['deregistration_s']['mean']} "
              f"traffic_stopped_mean={r['traffic_stopped_after_s']['mean']} "
              f"ended_quiet={r['delay_ends'].get('quiet', 0)} "
              f"ended_ceiling={r['delay_ends'].get('ceiling', 0)} "
              f"ended_fixed={r['delay_ends'].get('fixed', 0)} pods={len(r['pods'])}"
              + kube_result(r))
    print(markdown_table(results))
    sys.stdout.flush()
    if not args.keep and not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RigError as e:
        log(f"error: {e}")
        sys.exit(2)
    except KeyboardInterrupt as e:
        log(f"interrupted ({e}); cleaning up")
        PROCS.cleanup()
        sys.exit(130)
