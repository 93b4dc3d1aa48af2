"""An emulation of the Kubernetes API server, as much of it as drainit uses.

Where each behaviour comes from (the API reference and the Kubernetes
source, kubernetes/kubernetes):
- HTTPS only, the serving certificate signed by the cluster CA that every
  service account's ca.crt holds; bearer tokens in `Authorization`
  (API reference, "Authenticating": service account tokens).
- 401 for a missing or unknown token, 403 for an authenticated request
  RBAC does not allow; both with a `Status` body, kind Status,
  status Failure, reason Unauthorized / Forbidden, code, and the
  authorizer's message `pods "NAME" is forbidden: User
  "system:serviceaccount:NS:SA" cannot get resource "pods" in API group ""
  in the namespace "NS"` (apimachinery's StatusError, NewForbidden).
- 404 `Status` reason NotFound, message `pods "NAME" not found`.
- GET /api/v1/namespaces/NS/pods/NAME answers the Pod (kind Pod,
  apiVersion v1, metadata.uid, spec.terminationGracePeriodSeconds).
- A graceful DELETE (DeleteOptions.gracePeriodSeconds in the body or the
  gracePeriodSeconds query parameter, else the pod's
  terminationGracePeriodSeconds) does not remove the pod: it sets
  metadata.deletionTimestamp = now + grace and
  metadata.deletionGracePeriodSeconds = grace and answers 200 with the
  Pod (apiserver's registry/rest/delete.go BeforeDelete; the pod
  strategy's CheckGracefulDelete). A second delete only shortens them.
- POST /api/v1/namespaces/NS/events creates a core/v1 Event: 201 with the
  object, metadata.uid/resourceVersion/creationTimestamp filled in; 400
  BadRequest when the body's namespace differs from the path's
  ("the namespace of the provided object does not match the namespace
  sent on the request", rest.BeforeCreate); 422 Invalid without
  involvedObject or reason (core validation ValidateEvent).

- GET /apis/discovery.k8s.io/v1/namespaces/NS/endpointslices lists
  (kind EndpointSliceList, metadata.resourceVersion); with watch=1 it
  streams one JSON object per line, {"type": ADDED|MODIFIED|DELETED|
  BOOKMARK|ERROR, "object": ...}, of every change after the
  resourceVersion given, chunked, until timeoutSeconds; with
  allowWatchBookmarks=true it also sends BOOKMARK events whose object
  holds only kind, apiVersion and metadata.resourceVersion (API
  concepts, "Efficient detection of changes" and "Watch bookmarks").
  A resourceVersion too old for the server's history is answered with
  an ERROR event holding a Status, code 410, reason Expired, message
  "too old resource version: X (Y)" (the watch cache's behaviour; the
  client must list again).
- The EndpointSlice controller's part: when the pod gets its
  deletionTimestamp, the pod's endpoint turns ready=false,
  serving=false, terminating=true (conditions as in the discovery/v1
  reference); --endpoint-lag delays that, as a slow control plane does.
  This holds for the pod given with --pod (and its seeded slice).
- POST /api/v1/namespaces/NS/pods creates a Pod: 201 with the object,
  metadata.uid/resourceVersion/creationTimestamp filled in and
  spec.terminationGracePeriodSeconds defaulted to 30 (core/v1
  defaults, SetDefaults_PodSpec); 409 AlreadyExists `pods "NAME" already
  exists` for a name in use (apimachinery's NewAlreadyExists); 422
  Invalid without metadata.name.
- POST /apis/discovery.k8s.io/v1/namespaces/NS/endpointslices creates an
  EndpointSlice (201; 409 AlreadyExists), PUT .../endpointslices/NAME
  replaces one (200; 404 NotFound for an unknown name, as EndpointSlices
  are not created on update; 409 Conflict "the object has been modified;
  please apply your changes to the latest version and try again" when
  metadata.resourceVersion is given and is not the current one, the
  registry's optimistic concurrency in rest/update.go and
  NewConflict; without a resourceVersion the update is unconditional,
  as the EndpointSlice strategy's AllowUnconditionalUpdate allows). Each
  write gets a new resourceVersion and reaches the watches as ADDED or
  MODIFIED. This is how a controller writes slices: a test that plays
  the EndpointSlice controller (the rollout rig, with pods it created
  through the API) removes an endpoint at the moment it chooses.

Test controls (not API behaviour): --forbid makes every Pod read 403,
--hang accepts connections and never answers; --forbid-endpointslices
makes the EndpointSlice list 403; --expire-first-watch answers the first
watch with the 410 ERROR event; the tokens accepted are
read from --tokens for each request, so a test can rotate them; every
request is appended to --log as one JSON line.

Usage: apiserver.py --port P --cert C --key K --tokens FILE --log FILE
       --namespace NS [--pod NAME --grace SECONDS] [--forbid] [--hang]
       --ready FILE (written once listening: the port, one line; with
       --port 0 the kernel picks it)
Without --pod the server starts with no Pod and no EndpointSlice: the
test creates them through the API.
"""

import argparse
import datetime
import http.server
import json
import os
import socket
import ssl
import threading
import time
import urllib.parse
import uuid

args = None
lock = threading.Lock()
pods = {}  # name -> Pod object
resource_version = [1000]
cond = threading.Condition(lock)
slices = {}
history = []  # (resourceVersion, type, object), oldest first
expired_once = [False]


def rfc3339(at):
    return datetime.datetime.fromtimestamp(at, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def status(code, reason, message):
    return code, {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def next_version():
    resource_version[0] += 1
    return str(resource_version[0])


def slice_object(name, serving):
    return {
        "kind": "EndpointSlice",
        "apiVersion": "discovery.k8s.io/v1",
        "metadata": {"name": name, "namespace": args.namespace, "resourceVersion": next_version(),
                     "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": ["10.0.0.11"],
             "conditions": {"ready": serving, "serving": serving, "terminating": not serving},
             "targetRef": {"kind": "Pod", "name": args.pod, "namespace": args.namespace}},
            {"addresses": ["10.0.0.12"],
             "conditions": {"ready": True, "serving": True, "terminating": False},
             "targetRef": {"kind": "Pod", "name": "web-2", "namespace": args.namespace}},
        ],
    }


def put_slice(kind, obj):
    """Stores a change and wakes the watches (called with the lock held)."""
    slices[obj["metadata"]["name"]] = obj
    history.append((int(obj["metadata"]["resourceVersion"]), kind, obj))
    cond.notify_all()


def pod_object(meta, spec, grace):
    """A Pod as the API server stores it after defaulting."""
    meta = dict(meta)
    meta.update({"namespace": args.namespace, "uid": str(uuid.uuid4()),
                 "resourceVersion": next_version(), "creationTimestamp": rfc3339(time.time())})
    meta.pop("deletionTimestamp", None)
    meta.pop("deletionGracePeriodSeconds", None)
    spec = dict(spec)
    if spec.get("terminationGracePeriodSeconds") is None:
        spec["terminationGracePeriodSeconds"] = grace
    return {"kind": "Pod", "apiVersion": "v1", "metadata": meta, "spec": spec,
            "status": {"phase": "Running", "podIP": "127.0.0.1"}}


def write_slice(namespace, name, body, create):
    """POST (create) or PUT (update) of an EndpointSlice (lock held)."""
    if not isinstance(body, dict) or body.get("kind", "EndpointSlice") != "EndpointSlice":
        return status(400, "BadRequest", "the body is not an EndpointSlice")
    meta = body.setdefault("metadata", {})
    name = name or meta.get("name")
    if not name:
        return status(422, "Invalid", "EndpointSlice.discovery.k8s.io \"\" is invalid: metadata.name: Required value")
    if meta.get("namespace", namespace) != namespace or (meta.get("name", name) != name):
        return status(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request")
    current = slices.get(name)
    if create and current is not None:
        return status(409, "AlreadyExists", 'endpointslices.discovery.k8s.io "%s" already exists' % name)
    if not create and current is None:
        return status(404, "NotFound", 'endpointslices.discovery.k8s.io "%s" not found' % name)
    given = meta.get("resourceVersion")
    if not create and given and given != current["metadata"]["resourceVersion"]:
        return status(409, "Conflict",
                      'Operation cannot be fulfilled on endpointslices.discovery.k8s.io "%s": '
                      "the object has been modified; please apply your changes to the latest version and try again" % name)
    meta.update({"name": name, "namespace": namespace, "resourceVersion": next_version()})
    body.update({"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1"})
    put_slice("ADDED" if create else "MODIFIED", body)
    return (201 if create else 200), body


def endpoint_controller_sees_deletion():
    with cond:
        put_slice("MODIFIED", slice_object("web-abcde", False))


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def answer(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def record(self, body):
        token = self.headers.get("Authorization", "")
        with lock, open(args.log, "a") as f:
            f.write(json.dumps({
                "at": time.time(),
                "method": self.command,
                "path": self.path,
                "token": token[len("Bearer "):] if token.startswith("Bearer ") else None,
                "body": body,
            }) + "\n")

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def watch(self, query):
        since = int(query.get("resourceVersion", ["0"])[0] or 0)
        bookmarks = query.get("allowWatchBookmarks", ["false"])[0] == "true"
        until = time.time() + int(query.get("timeoutSeconds", ["1800"])[0])
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            with cond:
                expire = args.expire_first_watch and not expired_once[0]
                expired_once[0] = True
            if expire:
                error = status(410, "Expired", "too old resource version: %d (%d)" % (since, resource_version[0]))[1]
                self.chunk((json.dumps({"type": "ERROR", "object": error}) + "\n").encode())
                self.chunk(b"")
                return
            last = since
            next_bookmark = time.time() + 0.3
            while time.time() < until:
                with cond:
                    pending = [h for h in history if h[0] > last]
                    if not pending:
                        cond.wait(0.1)
                        pending = [h for h in history if h[0] > last]
                    current = resource_version[0]
                for version, kind, obj in pending:
                    self.chunk((json.dumps({"type": kind, "object": obj}) + "\n").encode())
                    last = version
                if bookmarks and time.time() >= next_bookmark:
                    next_bookmark = time.time() + 0.3
                    mark = {"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
                            "metadata": {"resourceVersion": str(max(last, current))}}
                    self.chunk((json.dumps({"type": "BOOKMARK", "object": mark}) + "\n").encode())
            self.chunk(b"")
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            pass

    def handle_any(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        self.record(body)
        routed = self.route(body)
        if routed is not None:
            self.answer(*routed)

    do_GET = do_POST = do_PUT = do_DELETE = handle_any

    def route(self, body):
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        with open(args.tokens) as f:
            tokens = {line.strip() for line in f if line.strip()}
        header = self.headers.get("Authorization", "")
        if not header.startswith("Bearer ") or header[len("Bearer "):] not in tokens:
            return status(401, "Unauthorized", "Unauthorized")
        user = "system:serviceaccount:%s:drainit" % args.namespace
        parts = url.path.strip("/").split("/")
        # /api/v1/namespaces/NS/pods/NAME and /api/v1/namespaces/NS/events
        if len(parts) == 6 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "pods":
            namespace, name = parts[3], parts[5]
            if args.forbid:
                verb = "get" if self.command == "GET" else "delete"
                return status(403, "Forbidden",
                              'pods "%s" is forbidden: User "%s" cannot %s resource "pods" in API group "" in the namespace "%s"'
                              % (name, user, verb, namespace))
            with lock:
                pod = pods.get(name) if namespace == args.namespace else None
                if pod is None:
                    return status(404, "NotFound", 'pods "%s" not found' % name)
                if self.command == "GET":
                    return 200, pod
                if self.command == "DELETE":
                    grace = None
                    if isinstance(body, dict) and body.get("gracePeriodSeconds") is not None:
                        grace = int(body["gracePeriodSeconds"])
                    elif "gracePeriodSeconds" in query:
                        grace = int(query["gracePeriodSeconds"][0])
                    if grace is None:
                        grace = pod["spec"]["terminationGracePeriodSeconds"]
                    meta = pod["metadata"]
                    current = meta.get("deletionGracePeriodSeconds")
                    if current is None and name == args.pod:
                        threading.Timer(args.endpoint_lag, endpoint_controller_sees_deletion).start()
                    if current is None or grace < current:
                        meta["deletionTimestamp"] = rfc3339(time.time() + grace)
                        meta["deletionGracePeriodSeconds"] = grace
                        meta["resourceVersion"] = next_version()
                    return 200, pod
            return status(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        if len(parts) == 5 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "pods" and self.command == "POST":
            namespace = parts[3]
            if not isinstance(body, dict) or not isinstance(body.get("metadata"), dict):
                return status(400, "BadRequest", "the body is not a Pod")
            name = body["metadata"].get("name")
            if not name:
                return status(422, "Invalid", 'Pod "" is invalid: metadata.name: Required value')
            if body["metadata"].get("namespace", namespace) != namespace or namespace != args.namespace:
                return status(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request")
            with lock:
                if name in pods:
                    return status(409, "AlreadyExists", 'pods "%s" already exists' % name)
                pods[name] = pod_object(body["metadata"], body.get("spec") or {}, 30)
                return 201, pods[name]
        if len(parts) in (6, 7) and parts[:4] == ["apis", "discovery.k8s.io", "v1", "namespaces"] and parts[5] == "endpointslices" and self.command in ("POST", "PUT"):
            namespace = parts[4]
            if (self.command == "POST") != (len(parts) == 6):
                return status(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
            with cond:
                return write_slice(namespace, parts[6] if len(parts) == 7 else None, body, self.command == "POST")
        if len(parts) == 6 and parts[:4] == ["apis", "discovery.k8s.io", "v1", "namespaces"] and parts[5] == "endpointslices" and self.command == "GET":
            namespace = parts[4]
            if args.forbid_endpointslices:
                return status(403, "Forbidden",
                              'endpointslices.discovery.k8s.io is forbidden: User "%s" cannot list resource "endpointslices" in API group "discovery.k8s.io" in the namespace "%s"'
                              % (user, namespace))
            if query.get("watch", ["0"])[0] in ("1", "true"):
                self.watch(query)
                return None
            with cond:
                items = [v for v in slices.values() if v["metadata"]["namespace"] == namespace]
                return 200, {"kind": "EndpointSliceList", "apiVersion": "discovery.k8s.io/v1",
                             "metadata": {"resourceVersion": str(resource_version[0])}, "items": items}
        if len(parts) == 5 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "events" and self.command == "POST":
            namespace = parts[3]
            if not isinstance(body, dict):
                return status(400, "BadRequest", "the body is not an Event")
            meta = body.setdefault("metadata", {})
            if meta.get("namespace", namespace) != namespace:
                return status(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request")
            if not body.get("involvedObject") or not body.get("reason") or not meta.get("name"):
                return status(422, "Invalid", 'Event "%s" is invalid: involvedObject, reason and metadata.name are required' % meta.get("name", ""))
            meta.update({"namespace": namespace, "uid": str(uuid.uuid4()),
                         "resourceVersion": next_version(), "creationTimestamp": rfc3339(time.time())})
            return 201, body
        return status(404, "NotFound", "the server could not find the requested resource")


def hang(listener, context):
    """Accepts, completes TLS, reads the request, and never answers."""
    held = []
    while True:
        conn, _ = listener.accept()
        try:
            tls = context.wrap_socket(conn, server_side=True)
            tls.recv(65536)
            held.append(tls)
        except (OSError, ssl.SSLError):
            conn.close()


def main():
    global args
    parser = argparse.ArgumentParser()
    for flag in ("--cert", "--key", "--tokens", "--log", "--namespace", "--ready"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--pod")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--grace", type=int, default=30)
    parser.add_argument("--forbid", action="store_true")
    parser.add_argument("--hang", action="store_true")
    parser.add_argument("--forbid-endpointslices", action="store_true")
    parser.add_argument("--expire-first-watch", action="store_true")
    parser.add_argument("--endpoint-lag", type=float, default=0.0)
    args = parser.parse_args()
    if args.pod:
        spec = {"terminationGracePeriodSeconds": args.grace,
                "containers": [{"name": "app", "image": "app:1"}],
                "serviceAccountName": "drainit"}
        pods[args.pod] = pod_object({"name": args.pod}, spec, args.grace)
        with cond:
            put_slice("ADDED", slice_object("web-abcde", True))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    if args.hang:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", args.port))
        listener.listen(16)
        announce(listener.getsockname()[1])
        hang(listener, context)
        return
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    announce(server.server_address[1])
    server.serve_forever()


def announce(port):
    """Writes the port into --ready whole (a reader that sees the file
    sees the port): a test that asked for port 0 learns it there."""
    partial = args.ready + ".partial"
    with open(partial, "w") as f:
        f.write("%d\n" % port)
    os.replace(partial, args.ready)


if __name__ == "__main__":
    main()
