#!/usr/bin/env bash
# scripts/bench-check.sh — drainit-check on large, real-world-shaped input
# (issues 11 and 17): time and peak memory for one 5 000-document and one
# 100 000-document file, to show that memory does not grow with the input
# beyond the cross-object summary.
#
# Usage: scripts/bench-check.sh [--runs N] [--docs N]... [--bin PATH]
#
#   --runs N    timed runs per size (default 3; the median and the worst are reported)
#   --docs N    documents in a generated file (a multiple of 5; repeatable;
#               default 5000 and 100000)
#   --bin PATH  measure this drainit-check (default: build the release binary)
#
# What it does:
#   1. installs GNU time (/usr/bin/time) with apt-get if it is missing;
#   2. builds drainit-check in release (the workspace's profile: LTO,
#      opt-level z), unless --bin is given;
#   3. for each size N, writes bench-out/check-N.yaml: N/5 apps spread over 20 namespaces,
#      each a Deployment (drainit in front, a drainit sidecar, or a plain app
#      with a preStop sleep; probes, env, resources as people write them), a
#      Service, a PodDisruptionBudget (every 10th app has none), an Ingress
#      (every 4th, ALB annotations) or a ConfigMap, and a
#      HorizontalPodAutoscaler (minReplicas 3, read by the replica rules); 20 of the
#      ConfigMaps are Namespaces instead. Some apps carry mistakes, so the
#      rules have findings to report;
#   4. runs `/usr/bin/time -v drainit-check --format json FILE` --runs times
#      (one warm-up first) and prints wall time, user+system CPU and peak RSS
#      (maximum resident set size), plus the same for an empty file (the
#      floor: start-up alone).
#
# It uses one CPU for a few seconds; nothing runs in parallel.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=3
sizes=()
bin=""
while (($#)); do
    case $1 in
        --runs) runs=$2; shift 2 ;;
        --docs) sizes+=("$2"); shift 2 ;;
        --bin) bin=$2; shift 2 ;;
        -h | --help) sed -n '2,31p' "$0"; exit 0 ;;
        *) echo "bench-check: unknown option $1" >&2; exit 2 ;;
    esac
done
((${#sizes[@]})) || sizes=(5000 100000)
for docs in "${sizes[@]}"; do
    if ! [[ $docs =~ ^[0-9]+$ ]] || ((docs % 5 != 0 || docs < 5)); then
        echo "bench-check: --docs must be a positive multiple of 5 (got $docs)" >&2
        exit 2
    fi
done

if [[ ! -x /usr/bin/time ]]; then
    echo "bench-check: installing GNU time" >&2
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null; }; then
        echo "bench-check: FAILED to install GNU time (/usr/bin/time): it measures the peak memory" >&2
        exit 1
    fi
fi

if [[ -z $bin ]]; then
    cargo build --release --locked -p drainit-check --bin drainit-check >&2
    bin=${CARGO_TARGET_DIR:-target}/release/drainit-check
fi
[[ -x $bin ]] || { echo "bench-check: $bin is not executable" >&2; exit 1; }

mkdir -p bench-out
empty=bench-out/check-empty.yaml
: >"$empty"

# Writes bench-out/check-N.yaml with N documents.
generate() {
python3 - "$1" "$2" <<'PY'
import sys

docs, path = int(sys.argv[1]), sys.argv[2]
apps = docs // 5
out = []

def deployment(i, ns, kind):
    grace = 30 + (i % 4) * 15
    delay = 10 if i % 17 else grace - 3  # every 17th: a budget that does not fit
    head = f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: app-{i}
  namespace: {ns}
  labels:
    app.kubernetes.io/name: app-{i}
    app.kubernetes.io/part-of: shop
spec:
  replicas: {1 if i % 13 == 0 else 3}
  selector:
    matchLabels:
      app.kubernetes.io/name: app-{i}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 0
  template:
    metadata:
      labels:
        app.kubernetes.io/name: app-{i}
        app.kubernetes.io/part-of: shop
      annotations:
        prometheus.io/scrape: "true"
        prometheus.io/port: "9095"
    spec:
      terminationGracePeriodSeconds: {grace}
      serviceAccountName: app-{i}
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
      containers:
"""
    app_probes = """          readinessProbe:
            httpGet:
              path: /healthz
              port: http
            periodSeconds: 5
          livenessProbe:
            tcpSocket:
              port: http
            periodSeconds: 10
"""
    resources = """          resources:
            requests:
              cpu: 100m
              memory: 128Mi
            limits:
              memory: 256Mi
"""
    if kind == "wrapper":
        body = f"""        - name: app
          image: ghcr.io/example/app-{i}:1.{i % 10}.0
          command: ["/drainit", "--"]
          args: ["/app", "--listen=:8080", "--log-format=json"]
          env:
            - name: DRAINIT_GRACE_PERIOD
              value: "{grace}s"
            - name: DRAINIT_PROPAGATION_DELAY
              value: "{delay}s"
            - name: DRAINIT_READY_CHECK
              value: "http://127.0.0.1:8080/healthz"
            - name: DATABASE_URL
              valueFrom:
                secretKeyRef:
                  name: app-{i}-db
                  key: url
          ports:
            - name: http
              containerPort: 8080
            - name: drainit-admin
              containerPort: 9095
          readinessProbe:
            httpGet:
              path: /ready
              port: drainit-admin
            periodSeconds: 2
          livenessProbe:
            httpGet:
              path: /live
              port: drainit-admin
            periodSeconds: 10
{resources}"""
    elif kind == "sidecar":
        body = f"""        - name: app
          image: ghcr.io/example/app-{i}:1.{i % 10}.0
          ports:
            - name: http
              containerPort: 8080
          lifecycle:
            preStop:
              httpGet:
                path: /prestop
                port: 9095
                httpHeaders:
                  - name: X-Drainit-Token
                    value: "token-{i}"
{resources}        - name: drainit
          image: ghcr.io/example/drainit:0.1.0
          args: ["sidecar"]
          env:
            - name: DRAINIT_GRACE_PERIOD
              value: "{grace}s"
            - name: DRAINIT_PROPAGATION_DELAY
              value: "{delay}s"
            - name: DRAINIT_READY_CHECK
              value: "tcp://127.0.0.1:8080"
            - name: DRAINIT_PRESTOP_TOKEN
              value: "token-{i}"
          ports:
            - name: drainit-admin
              containerPort: 9095
          readinessProbe:
            httpGet:
              path: /ready
              port: drainit-admin
          livenessProbe:
            httpGet:
              path: /live
              port: drainit-admin
"""
    else:
        sleep = 10 if i % 11 else grace  # every 11th: a sleep that eats the grace period
        body = f"""        - name: app
          image: gcr.io/distroless/java21-debian12:nonroot
          command: ["java", "-XX:MaxRAMPercentage=75", "-jar", "/app/app-{i}.jar"]
          ports:
            - name: http
              containerPort: 8080
          lifecycle:
            preStop:
              sleep:
                seconds: {sleep}
{app_probes}{resources}"""
    return head + body

for i in range(apps):
    ns = f"team-{i % 20}"
    kind = ("wrapper", "wrapper", "wrapper", "sidecar", "plain")[i % 5]
    out.append(deployment(i, ns, kind))
    out.append(f"""apiVersion: v1
kind: Service
metadata:
  name: app-{i}
  namespace: {ns}
spec:
  selector:
    app.kubernetes.io/name: app-{i}
  ports:
    - name: http
      port: 80
      targetPort: http
""")
    if i % 10 == 9:
        out.append(f"""apiVersion: v1
kind: ConfigMap
metadata:
  name: app-{i}-flags
  namespace: {ns}
data:
  FEATURES: "checkout-v2,search-beta"
""")
    else:
        out.append(f"""apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: app-{i}
  namespace: {ns}
spec:
  maxUnavailable: 1
  selector:
    matchLabels:
      app.kubernetes.io/name: app-{i}
""")
    if i < 20:
        gate = "enabled" if i % 2 else "disabled"
        out.append(f"""apiVersion: v1
kind: Namespace
metadata:
  name: team-{i}
  labels:
    elbv2.k8s.aws/pod-readiness-gate-inject: {gate}
""")
    elif i % 4 == 0:
        out.append(f"""apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: app-{i}
  namespace: {ns}
  annotations:
    alb.ingress.kubernetes.io/target-type: ip
    alb.ingress.kubernetes.io/target-group-attributes: deregistration_delay.timeout_seconds={20 if i % 8 else 120}
spec:
  ingressClassName: alb
  rules:
    - host: app-{i}.example.com
      http:
        paths:
          - path: /
            pathType: Prefix
            backend:
              service:
                name: app-{i}
                port:
                  name: http
""")
    else:
        out.append(f"""apiVersion: v1
kind: ConfigMap
metadata:
  name: app-{i}-config
  namespace: {ns}
data:
  LOG_LEVEL: info
  application.yaml: |
    server:
      port: 8080
      shutdown: graceful
""")
    out.append(f"""apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: app-{i}
  namespace: {ns}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: app-{i}
  minReplicas: 3
  maxReplicas: 12
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: 70
""")

assert len(out) == docs, (len(out), docs)
with open(path, "w") as f:
    f.write("---\n".join(out))
PY
}

# One run: prints "wall_s cpu_s maxrss_kb exit findings".
measure() {
    local file=$1 log out rc
    log=$(mktemp)
    out=$(mktemp)
    rc=0
    /usr/bin/time -v "$bin" --format json "$file" >"$out" 2>"$log" || rc=$?
    if ((rc > 1)); then
        echo "bench-check: drainit-check exited $rc on $file:" >&2
        cat "$log" >&2
        exit 1
    fi
    python3 - "$log" "$out" "$rc" <<'PY'
import json, re, sys
log = open(sys.argv[1]).read()
def field(name):
    m = re.search(r"^\s*" + re.escape(name) + r": (.+)$", log, re.M)
    if not m:
        sys.exit(f"no '{name}' in /usr/bin/time output")
    return m.group(1).strip()
wall = field("Elapsed (wall clock) time (h:mm:ss or m:ss)")
parts = [float(p) for p in wall.split(":")]
seconds = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
cpu = float(field("User time (seconds)")) + float(field("System time (seconds)"))
rss = int(field("Maximum resident set size (kbytes)"))
findings = len(json.load(open(sys.argv[2])))
print(f"{seconds:.3f} {cpu:.3f} {rss} {sys.argv[3]} {findings}")
PY
    rm -f "$log" "$out"
}

for docs in "${sizes[@]}"; do
input=bench-out/check-$docs.yaml
generate "$docs" "$input"
bytes=$(wc -c <"$input" | tr -d ' ')
lines=$(wc -l <"$input" | tr -d ' ')
measure "$input" >/dev/null # warm-up (page cache)
results=()
for ((run = 1; run <= runs; run++)); do
    results+=("$(measure "$input")")
done
floor=$(measure "$empty")

python3 - "$docs" "$bytes" "$lines" "$floor" "${results[@]}" <<'PY'
import statistics, sys
docs, size, lines = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
floor = sys.argv[4].split()
runs = [r.split() for r in sys.argv[5:]]
wall = [float(r[0]) for r in runs]
cpu = [float(r[1]) for r in runs]
rss = [int(r[2]) for r in runs]
exits = {r[3] for r in runs}
findings = {r[4] for r in runs}
print(f"input: {docs} documents, {lines} lines, {size / 1e6:.2f} MB; {len(runs)} runs (after one warm-up)")
print(f"wall time:  median {statistics.median(wall):.3f} s, worst {max(wall):.3f} s "
      f"({docs / statistics.median(wall):,.0f} documents/s)")
print(f"CPU time:   median {statistics.median(cpu):.3f} s (user + system)")
print(f"peak RSS:   median {statistics.median(rss) / 1024:.1f} MiB, worst {max(rss) / 1024:.1f} MiB")
print(f"empty file: {float(floor[0]) * 1000:.0f} ms, peak RSS {int(floor[2]) / 1024:.1f} MiB (start-up alone)")
print(f"findings:   {', '.join(sorted(findings))}; exit status {', '.join(sorted(exits))}")
PY
done
