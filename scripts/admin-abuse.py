#!/usr/bin/env python3
"""Admin-server abuse figures for issue 9, defects 12 and 16.

usage (as root): scripts/admin-abuse.py [DRAINIT_BINARY]   (default target/release/drainit)

Runs itself in a network namespace of its own (unshare --net) with lo up
and 10.200.0.1/32 on it, so every request stays inside. Measures:
- 12: with 1 100 idle connections open (the cap is 1 024), how many of
  100 /ready + /live probes answer 200, their latency, drainit's RSS;
- 16: 2 000 POST /prestop from a non-loopback source with no allow-list
  and no token: the answers, whether /ready stays 200, and how many
  "refused /prestop" lines reach stderr.
"""
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time

ADDRESS = "10.200.0.1"
PORT = 9095


def in_namespace():
    return os.environ.get("ADMIN_ABUSE_NETNS") == "1"


def reexec_in_namespace(binary):
    script = f"ip link set lo up && ip addr add {ADDRESS}/32 dev lo && exec \"$0\" \"$@\""
    env = dict(os.environ, ADMIN_ABUSE_NETNS="1")
    args = ["unshare", "--net", "sh", "-c", script, sys.executable, __file__, binary]
    sys.exit(subprocess.call(args, env=env))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    return -1


def request(host, path, method="GET", timeout=5):
    started = time.perf_counter()
    try:
        with socket.create_connection((host, PORT), timeout=timeout) as conn:
            conn.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            answer = b""
            while chunk := conn.recv(4096):
                answer += chunk
        return answer[9:12].decode() or None, time.perf_counter() - started
    except OSError:
        return None, time.perf_counter() - started


def main(binary):
    resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
    stderr = tempfile.NamedTemporaryFile("w+", prefix="drainit-abuse-")
    drainit = subprocess.Popen(
        [binary, "--admin-listen", f"0.0.0.0:{PORT}", "--propagation-delay", "30s",
         "--grace-period", "60s", "--", "sleep", "300"],
        stderr=stderr)
    try:
        deadline = time.time() + 10
        while request("127.0.0.1", "/ready")[0] != "200":
            if time.time() > deadline:
                sys.exit("drainit never answered /ready")
            time.sleep(0.05)
        print(f"binary: {binary} ({os.path.getsize(binary)} bytes)")
        print(f"idle RSS: {rss_kib(drainit.pid)} KiB")

        idle = [socket.create_connection(("127.0.0.1", PORT)) for _ in range(1100)]
        probes = [request("127.0.0.1", path) for path in ["/ready", "/live"] * 50]
        answered = sorted(took for code, took in probes if code == "200")
        line = f"12: 1100 idle connections open: {len(answered)}/100 probes answered 200"
        if answered:
            line += (f", latency p50 {answered[len(answered) // 2] * 1000:.2f} ms,"
                     f" max {answered[-1] * 1000:.2f} ms")
        print(line + f"; RSS {rss_kib(drainit.pid)} KiB")
        for conn in idle:
            conn.close()
        time.sleep(0.5)

        first, _ = request(ADDRESS, "/prestop", "POST", timeout=2)
        if first != "403":
            ready = request("127.0.0.1", "/ready")[0]
            print(f"16: the first POST /prestop from {ADDRESS} (no allow-list, no token) got {first}"
                  f" within 2 s and /ready answers {ready}: anyone may drain")
            return
        answers = {"403": 1}
        started = time.perf_counter()
        for _ in range(1999):
            code, _ = request(ADDRESS, "/prestop", "POST")
            answers[code] = answers.get(code, 0) + 1
        took = time.perf_counter() - started
        ready = request("127.0.0.1", "/ready")[0]
        stderr.flush()
        stderr.seek(0)
        refused_lines = sum("refused /prestop" in line for line in stderr)
        print(f"16: 2000 POST /prestop from {ADDRESS} (no allow-list, no token): answers {answers}"
              f" in {took:.2f} s; /ready afterwards {ready}; 'refused /prestop' lines on stderr:"
              f" {refused_lines}")
    finally:
        drainit.kill()
        drainit.wait()


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else "target/release/drainit"
    target = os.path.abspath(target)
    if in_namespace():
        main(target)
    else:
        reexec_in_namespace(target)
