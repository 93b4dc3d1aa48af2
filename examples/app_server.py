#!/usr/bin/env python3
"""A plain HTTP server written the way most apps are: on SIGTERM it stops
listening at once, finishes the requests in flight, closes idle keep-alive
connections and exits (nginx and Apache behave like this).

It knows nothing about load balancers, readiness or drain delays: that is the
point. The rollout rig (tests/rollout/rig.py) runs it behind HAProxy, bare or
under an init (tini, drainit), to show what a rolling update does to it.

    python3 examples/app_server.py --port 8080 [--name pod-1] [--slow-start 3]
    python3 examples/app_server.py --fd 3    # a bound socket handed in

GET /healthz answers 200 "ok"; any other GET answers 200 with the pod's name
(also in the X-Pod header). Standard library only; logs go to stderr, one line
per lifecycle event, each with a wall-clock timestamp (t=<unix seconds>) that
the rig reads back.
"""

import argparse
import os
import signal
import socket
import sys
import threading
import time

MAX_HEAD = 16 * 1024


def log(name, msg):
    sys.stderr.write(f"app[{name}] pid={os.getpid()} t={time.time():.6f} {msg}\n")
    sys.stderr.flush()


class Server:
    def __init__(self, args):
        self.args = args
        self.name = args.name
        self.lock = threading.Lock()
        self.stopping = False
        self.listener = None
        self.conns = {}  # socket -> "idle" | "busy"
        self.wake = threading.Event()
        self.stop_signalled = threading.Event()  # ends held requests (--hold-ms)

    # -- signal handling: runs in the main thread -------------------------
    def on_stop(self, signum, _frame):
        if self.stopping:
            return
        log(self.name, f"stop signal {signal.Signals(signum).name}: closing listener")
        self.stop_signalled.set()
        with self.lock:
            self.stopping = True
            if self.listener is not None:
                # Stop listening at once: connections still in the backlog
                # are reset by the kernel, new ones are refused.
                try:
                    self.listener.close()
                except OSError:
                    pass
                self.listener = None
            # Idle keep-alive connections are closed now; busy ones are
            # closed after their response.
            for sock, state in list(self.conns.items()):
                if state == "idle":
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
        self.wake.set()

    # -- connections --------------------------------------------------------
    def respond(self, sock, status, body, close):
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}[status]
        data = body.encode()
        head = (
            f"HTTP/1.1 {status} {reason}\r\n"
            f"Content-Type: text/plain\r\n"
            f"Content-Length: {len(data)}\r\n"
            f"X-Pod: {self.name}\r\n"
            + ("Connection: close\r\n" if close else "")
            + "\r\n"
        )
        sock.sendall(head.encode() + data)

    def serve_conn(self, sock):
        buf = b""
        try:
            while True:
                # Wait for a request head; the connection is idle meanwhile.
                while b"\r\n\r\n" not in buf:
                    chunk = sock.recv(4096)
                    if not chunk:
                        return
                    with self.lock:
                        if sock not in self.conns:
                            return
                        self.conns[sock] = "busy"
                    buf += chunk
                    if len(buf) > MAX_HEAD:
                        self.respond(sock, 400, "request head too large\n", True)
                        return
                head, _, buf = buf.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                parts = lines[0].split(" ")
                if len(parts) != 3:
                    self.respond(sock, 400, "bad request line\n", True)
                    return
                method, path, version = parts
                headers = {}
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    headers[k.strip().lower()] = v.strip()
                length = int(headers.get("content-length", "0") or "0")
                while len(buf) < length:
                    chunk = sock.recv(4096)
                    if not chunk:
                        return
                    buf += chunk
                buf = buf[length:]
                # Health checks are answered at once, as a cheap /healthz is.
                if self.args.work_ms > 0 and path != "/healthz":
                    time.sleep(self.args.work_ms / 1000.0)
                if self.args.hold_ms > 0 and path != "/healthz":
                    # A long poll: answered when its wait is up, or at once
                    # when the stop signal comes.
                    self.stop_signalled.wait(self.args.hold_ms / 1000.0)
                close = (
                    self.stopping
                    or headers.get("connection", "").lower() == "close"
                    or version == "HTTP/1.0"
                )
                if method not in ("GET", "HEAD"):
                    self.respond(sock, 405, "method not allowed\n", close)
                elif path == "/healthz":
                    self.respond(sock, 200, "ok\n", close)
                else:
                    self.respond(sock, 200, f"pod={self.name}\n", close)
                if close:
                    return
                with self.lock:
                    if self.stopping:
                        return
                    self.conns[sock] = "idle"
        except OSError:
            return
        finally:
            with self.lock:
                self.conns.pop(sock, None)
            try:
                sock.close()
            except OSError:
                pass
            self.wake.set()

    # -- main loop ---------------------------------------------------------
    def run(self):
        signal.signal(signal.SIGTERM, self.on_stop)
        signal.signal(signal.SIGINT, self.on_stop)
        if self.args.slow_start > 0:
            log(self.name, f"starting slowly: {self.args.slow_start}s before listening")
            deadline = time.monotonic() + self.args.slow_start
            while not self.stopping and time.monotonic() < deadline:
                time.sleep(0.05)
            if self.stopping:
                log(self.name, "exit 0 (stopped before listening)")
                return 0
        if self.args.fd is not None:
            ls = socket.socket(fileno=self.args.fd)
        else:
            ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            ls.bind((self.args.host, self.args.port))
        ls.listen(128)
        ls.settimeout(0.2)
        with self.lock:
            if self.stopping:
                ls.close()
                return 0
            self.listener = ls
        host, port = ls.getsockname()[:2]
        log(self.name, f"listening on {host}:{port}")
        while True:
            with self.lock:
                listener = self.listener
            if listener is None:
                break
            try:
                sock, _ = listener.accept()
            except socket.timeout:
                continue
            except OSError:
                break  # closed by the signal handler
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                if self.stopping:
                    sock.close()
                    continue
                self.conns[sock] = "idle"
            threading.Thread(target=self.serve_conn, args=(sock,), daemon=True).start()
        # Finish the requests in flight, then exit.
        deadline = time.monotonic() + self.args.drain_timeout
        while time.monotonic() < deadline:
            with self.lock:
                busy = sum(1 for s in self.conns.values() if s == "busy")
                for sock, state in list(self.conns.items()):
                    if state == "idle":
                        try:
                            sock.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass
                if not self.conns:
                    break
            self.wake.wait(0.05)
            self.wake.clear()
        log(self.name, f"exit 0 (in-flight finished, {busy} were busy at last look)")
        return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", type=int)
    where.add_argument("--fd", type=int,
                       help="listen on this inherited socket, already bound (a test hands one in)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--name", default=f"app-{os.getpid()}")
    p.add_argument("--slow-start", type=float, default=0.0, metavar="SECONDS",
                   help="wait this long before listening (a slow-starting app)")
    p.add_argument("--work-ms", type=float, default=1.0,
                   help="time spent on each request (but /healthz)")
    p.add_argument("--hold-ms", type=float, default=0.0,
                   help="hold each request (but /healthz) this long, as a long poll does, "
                   "answering it at once on the stop signal")
    p.add_argument("--drain-timeout", type=float, default=10.0,
                   help="longest wait for in-flight requests after SIGTERM")
    args = p.parse_args()
    return Server(args).run()


if __name__ == "__main__":
    sys.exit(main())
