#!/usr/bin/env bash
# Multi-host GPU training without a scheduler: run this on every host with the same command.
#
#   # on host i of N (host 0's address is the coordinator's):
#   COORDINATOR=10.0.0.1:8476 NUM_HOSTS=4 HOST_INDEX=i launch/gpu_multihost.sh train \
#       --gin_file=stages/clr_pt.gin --gin_file=sharding/multihost_gpu.gin --gin.MODEL_DIR="'/shared/runs/clr_pt'"
#
#   # or, from one machine with ssh access to all hosts (same path to the checkout on each):
#   HOSTS="gpu0 gpu1 gpu2 gpu3" launch/gpu_multihost.sh train ...
#
# The coordinator runs inside process 0; the other processes connect to it (JAX_COORDINATOR_ADDRESS,
# JAX_NUM_PROCESSES, JAX_PROCESS_ID, read by `class-jax`). MODEL_DIR must be on storage every host sees.
set -euo pipefail

if [[ $# -eq 0 ]]; then
  echo "usage: COORDINATOR=host:port NUM_HOSTS=N HOST_INDEX=i $0 COMMAND [ARGS...]  (or HOSTS=\"h0 h1 ...\" $0 ...)" >&2
  exit 2
fi
python="${PYTHON:-python3}"
export XLA_FLAGS="--xla_gpu_enable_latency_hiding_scheduler=true ${XLA_FLAGS:-}"

if [[ -n "${HOSTS:-}" ]]; then
  read -r -a hosts <<<"$HOSTS"
  port="${COORDINATOR_PORT:-8476}"
  repo="$(cd "$(dirname "$0")/.." && pwd)"
  args=""
  for arg in "$@"; do args+=" $(printf '%q' "$arg")"; done
  pids=()
  for i in "${!hosts[@]}"; do
    ssh "${hosts[$i]}" "cd $(printf '%q' "$repo") && COORDINATOR=${hosts[0]}:${port} NUM_HOSTS=${#hosts[@]} \
HOST_INDEX=${i} launch/gpu_multihost.sh${args}" &
    pids+=("$!")
  done
  status=0
  for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
  exit "$status"
fi

: "${COORDINATOR:?set COORDINATOR=host:port (host 0)}"
: "${NUM_HOSTS:?set NUM_HOSTS}"
: "${HOST_INDEX:?set HOST_INDEX (0-based)}"
export JAX_COORDINATOR_ADDRESS="$COORDINATOR" JAX_NUM_PROCESSES="$NUM_HOSTS" JAX_PROCESS_ID="$HOST_INDEX"
exec "$python" -m class_jax.cli "$@"
