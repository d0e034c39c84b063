#!/usr/bin/env bash
# Create a kind cluster with Calico (pinned), wait until Calico enforces NetworkPolicy.
# Needs docker, kind and kubectl, and the internet. Then run the e2e suite:
#   e2e/kind-up.sh && python3 -m pytest e2e -v
set -euo pipefail
CALICO_VERSION=${CALICO_VERSION:-v3.28.2}
# The node image (and so the Kubernetes version) is pinned by digest: kind v0.25.0's default, 1.31.2.
NODE_IMAGE=${NODE_IMAGE:-kindest/node:v1.31.2@sha256:18fbefc20a7113353c7b75b5c869d7145a6abd6269154825872dc59c1329912e}
PROBE_IMAGE=${PROBE_IMAGE:-python:3.12-alpine}
CLUSTER=${CLUSTER:-netprobe}
here=$(cd "$(dirname "$0")/.." && pwd)

log() { printf '[kind-up] %s\n' "$*" >&2; }

if ! kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  log "creating kind cluster $CLUSTER ($NODE_IMAGE)"
  kind create cluster --name "$CLUSTER" --config "$here/kind-config.yaml" --image "$NODE_IMAGE" --wait 0s
fi
kubectl config use-context "kind-$CLUSTER" >/dev/null

log "installing Calico $CALICO_VERSION"
kubectl apply --server-side -f "https://raw.githubusercontent.com/projectcalico/calico/${CALICO_VERSION}/manifests/calico.yaml" >/dev/null
kubectl -n kube-system rollout status daemonset/calico-node --timeout=300s
kubectl -n kube-system rollout status deployment/calico-kube-controllers --timeout=300s
kubectl wait --for=condition=Ready nodes --all --timeout=300s
# CoreDNS starts only once there is a CNI; netprobe's DNS checks (and the e2e suite) need it.
log "waiting for CoreDNS"
kubectl -n kube-system rollout status deployment/coredns --timeout=300s

# Calico is "ready" before it enforces. Prove both directions with real connections:
# first one that must succeed (no policy yet), then, under a deny-all policy, that it is dropped.
# A probe prints one RESULT line; a probe pod that fails to run (image pull, admission,
# scheduling) prints none and proves nothing either way.
ns=calico-enforce-check
kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
trap 'kubectl delete namespace "$ns" --wait=false >/dev/null 2>&1 || true' EXIT
kubectl -n "$ns" get pod server >/dev/null 2>&1 || kubectl -n "$ns" run server --image="$PROBE_IMAGE" \
  --labels=app=server --port=8080 --command -- python3 -m http.server 8080 >/dev/null
kubectl -n "$ns" wait --for=condition=Ready pod/server --timeout=180s >/dev/null
ip=$(kubectl -n "$ns" get pod server -o jsonpath='{.status.podIP}')

probe() {  # prints "connected", "blocked", "error ..." or nothing (the probe pod did not run)
  kubectl -n "$ns" run "probe-$RANDOM" --rm -i --restart=Never --image="$PROBE_IMAGE" --quiet -- \
    python3 -c "
import socket
try:
    socket.create_connection(('$ip', 8080), 2)
    print('RESULT connected')
except socket.timeout:
    print('RESULT blocked')
except OSError as exc:
    print('RESULT error', exc)
socket.getaddrinfo('kubernetes.default.svc.cluster.local', 443)
print('DNS ok')" 2>/dev/null | sed -n 's/^RESULT //p;s/^DNS ok$/dns-ok/p' | paste -sd' ' || true
}

log "positive control: a connection with no policy must succeed (and DNS must resolve)"
ok=""
for _ in $(seq 1 30); do
  out=$(probe)
  if [ "$out" = "connected dns-ok" ]; then ok=1; break; fi
  log "  not yet: ${out:-the probe pod did not run}"
  sleep 2
done
if [ -z "$ok" ]; then
  log "positive control failed: pods cannot reach each other (or DNS) even without a policy"
  exit 1
fi

cat <<YAML | kubectl -n "$ns" apply -f - >/dev/null
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all}
spec: {podSelector: {}, policyTypes: [Ingress]}
YAML
log "waiting until Calico enforces NetworkPolicy (the same connection must now be dropped)"
for _ in $(seq 1 60); do
  out=$(probe)
  case "$out" in
    "blocked dns-ok")
      log "Calico enforces NetworkPolicy"
      exit 0 ;;
    *) log "  not yet: ${out:-the probe pod did not run}" ;;
  esac
  sleep 2
done
log "Calico did not start enforcing NetworkPolicy within 2 minutes"
exit 1
