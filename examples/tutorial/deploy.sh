#!/usr/bin/env bash
# Deploy the tutorial scenario into a namespace and wait until it runs.
#   examples/tutorial/deploy.sh NAMESPACE [--no-dns]
# On the netprobe lab (NETPROBE_LAB=1) the public images are swapped for the lab's own.
set -euo pipefail
ns=${1:?usage: deploy.sh NAMESPACE [--no-dns]}
here=$(cd "$(dirname "$0")" && pwd)
policies=$here/policies.yaml
[ "${2:-}" = "--no-dns" ] && policies=$here/no-dns/policies.yaml
kubectl=${KUBECTL:-kubectl}

swap_images() {
  if [ "${NETPROBE_LAB:-}" = 1 ]; then
    sed -e "s#image: postgres:15#image: ${NETPROBE_LAB_POSTGRES_IMAGE}#" \
        -e "s#image: python:3.12-alpine#image: ${NETPROBE_LAB_PYTHON_IMAGE}#"
  else
    cat
  fi
}

$kubectl get namespace "$ns" >/dev/null 2>&1 || $kubectl create namespace "$ns" >/dev/null
swap_images < "$here/workloads.yaml" | $kubectl apply -n "$ns" -f - >/dev/null
$kubectl apply -n "$ns" -f "$policies" >/dev/null
for d in db api frontend; do
  $kubectl -n "$ns" rollout status "deploy/$d" --timeout=180s >/dev/null
done
echo "tutorial deployed in namespace $ns ($(basename "$(dirname "$policies")")/$(basename "$policies"))" >&2
