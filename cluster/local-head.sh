#!/usr/bin/env bash
# A one-machine "cluster" for trying `ray job submit` offline (token auth, loopback only).
# Usage: bash cluster/local-head.sh start|stop
set -euo pipefail
export RAY_AUTH_MODE=token
case "${1:-start}" in
  start)
    [ -s ~/.ray/auth_token ] || ray get-auth-token --generate >/dev/null
    ray start --head --node-ip-address=127.0.0.1 --port=6390 --num-cpus="$(nproc)" \
      --dashboard-host=127.0.0.1 --dashboard-port=8270 --disable-usage-stats
    echo "submit with: RAY_AUTH_MODE=token ray job submit --address http://127.0.0.1:8270 --working-dir . -- python jobs/pretrain.py --config recipe:simclr_mnist_demo"
    ;;
  stop) ray stop ;;
esac
