#!/usr/bin/env bash
# Runs a class-jax command on this machine: one process, or several joined through a localhost coordinator.
#
#   launch/local.sh train --gin_file=stages/finetune_xor.gin --gin.MODEL_DIR="'/tmp/xor'"
#   launch/local.sh --processes 2 --cpu_devices 4 train ...   # 2 processes x 4 fake CPU devices, gloo collectives
#
# Options (before the command):
#   --processes N     processes to start (default 1); N > 1 starts them in the background with a coordinator on a
#                     free localhost port, writes process i's output to $LOG_DIR/process_i.log (default: .) and
#                     exits with the first non-zero status.
#   --cpu_devices M   run on the CPU with M devices per process (XLA's host-platform device count).
# SIGTERM / SIGINT are forwarded to every process, which checkpoints and exits (rerun to resume).
# PYTHON selects the interpreter (default: python3).
set -euo pipefail

processes=1
cpu_devices=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --processes) processes="$2"; shift 2 ;;
    --cpu_devices) cpu_devices="$2"; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) break ;;
  esac
done
if [[ $# -eq 0 ]]; then
  echo "usage: $0 [--processes N] [--cpu_devices M] COMMAND [ARGS...]" >&2
  exit 2
fi
python="${PYTHON:-python3}"
if [[ -n "$cpu_devices" ]]; then
  export JAX_PLATFORMS=cpu
  # Later XLA flags win, so this count overrides one already in XLA_FLAGS.
  export XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=${cpu_devices}"
fi
if [[ "$processes" -eq 1 ]]; then
  exec "$python" -m class_jax.cli "$@"
fi

log_dir="${LOG_DIR:-.}"
mkdir -p "$log_dir"
port="${COORDINATOR_PORT:-$("$python" -c 'import socket; s = socket.socket(); s.bind(("localhost", 0)); print(s.getsockname()[1])')}"
pids=()
for ((i = 0; i < processes; i++)); do
  "$python" -m class_jax.cli "$@" --coordinator_address="localhost:${port}" --num_processes="$processes" \
    --process_id="$i" >"${log_dir}/process_${i}.log" 2>&1 &
  pids+=("$!")
done
forward() { kill -s "$1" "${pids[@]}" 2>/dev/null || true; }
trap 'forward TERM' TERM
trap 'forward INT' INT
status=0
for pid in "${pids[@]}"; do
  # `wait` returns early (status > 128) when a trapped signal arrives; keep waiting for the process itself.
  while true; do
    if wait "$pid"; then code=0; else code=$?; fi
    if kill -0 "$pid" 2>/dev/null; then continue; fi
    break
  done
  if [[ "$code" -ne 0 && "$status" -eq 0 ]]; then status="$code"; fi
done
exit "$status"
