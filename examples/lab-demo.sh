#!/usr/bin/env bash
# The main job, on this machine: install netprobe, bring the lab cluster up, deploy the
# tutorial (db, api, frontend + 3 NetworkPolicies) and check it with `netprobe run`.
#   bash examples/lab-demo.sh            # exit code = netprobe's (0: every cell matches)
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -e . >&2
eval "$(../shared/lab/up.sh)"
examples/tutorial/deploy.sh tutorial
netprobe run -f examples/tutorial/expect.yaml -n tutorial --image "$NETPROBE_LAB_PYTHON_IMAGE"
