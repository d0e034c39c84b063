#!/usr/bin/env bash
# Create a kind cluster with Calico (pinned), wait until Calico enforces NetworkPolicy.
# Needs docker, kind and kubectl, and the internet. Then run the e2e suite:
#   e2e/kind-up.sh && python3 -m pytest e2e -v
set -euo pipefail
CALICO_VERSION=${CALICO_VERSION:-v3.28.2}
CLUSTER=${CLUSTER:-netprobe}
here=$(cd "$(dirname "$0")/.." && pwd)

log() { printf '[kind-up] %s\n' "$*" >&2; }

if ! kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  log "creating kind cluster $CLUSTER"
  kind create cluster --name "$CLUSTER" --config "$here/kind-config.yaml" --wait 0s
fi
kubectl config use-context "kind-$CLUSTER" >/dev/null

log "installing Calico $CALICO_VERSION"
kubectl apply --server-side -f "https://raw.githubusercontent.com/projectcalico/calico/${CALICO_VERSION}/manifests/calico.yaml" >/dev/null
kubectl -n kube-system rollout status daemonset/calico-node --timeout=300s
kubectl -n kube-system rollout status deployment/calico-kube-controllers --timeout=300s
kubectl wait --for=condition=Ready nodes --all --timeout=300s

# Calico is "ready" before it enforces: prove a deny-all policy actually drops traffic.
log "waiting until Calico enforces NetworkPolicy"
ns=calico-enforce-check
kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl -n "$ns" run server --image=python:3.12-alpine --labels=app=server --port=8080 \
  --command -- python3 -m http.server 8080 >/dev/null 2>&1 || true
kubectl -n "$ns" wait --for=condition=Ready pod/server --timeout=180s >/dev/null
ip=$(kubectl -n "$ns" get pod server -o jsonpath='{.status.podIP}')
cat <<YAML | kubectl -n "$ns" apply -f - >/dev/null
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all}
spec: {podSelector: {}, policyTypes: [Ingress]}
YAML
for _ in $(seq 1 60); do
  if ! kubectl -n "$ns" run "probe-$RANDOM" --rm -i --restart=Never --image=python:3.12-alpine --quiet -- \
      python3 -c "import socket; socket.create_connection(('$ip', 8080), 2)" >/dev/null 2>&1; then
    log "Calico enforces NetworkPolicy"
    kubectl delete namespace "$ns" --wait=false >/dev/null
    exit 0
  fi
  sleep 2
done
log "Calico did not start enforcing NetworkPolicy within 2 minutes"
exit 1
