#!/usr/bin/env bash
# Runs a class-jax command on every worker of Cloud TPU VMs (one host, a pod slice, or several slices).
#
#   launch/tpu_vm.sh --tpu my-v4-64 --zone us-central2-b -- train --gin_file=stages/clr_pt.gin \
#       --gin_file=sharding/fsdp.gin --gin.MODEL_DIR="'gs://bucket/clr_pt'"
#
# Every worker runs the same command (SPMD); JAX discovers the other workers itself (jax.distributed detects TPU
# pods and, for multi-slice queued resources, the MEGASCALE_* environment), so no coordinator flags are needed.
# Arguments after `--` reach class-jax unchanged: each is shell-quoted for the remote shell, so gin overrides such
# as --gin.MODEL_DIR="'gs://b/run'" keep their inner quotes.
#
# Options:
#   --tpu NAMES       TPU VM name, or comma-separated node names of a multi-slice job (run concurrently)
#   --zone ZONE       zone of the TPU VMs
#   --project ID      GCP project (default: gcloud's)
#   --repo DIR        checkout of class_jax on the workers (default: ~/class_jax)
#   --setup           first install class_jax with TPU JAX on every worker (pip install -e ".[tpu]")
#   --env K=V         environment for the command (repeatable), e.g. --env XLA_FLAGS=...
#   --dry_run         print the gcloud commands instead of running them
set -euo pipefail

tpu=""; zone=""; project=""; repo='~/class_jax'; setup=0; dry_run=0; envs=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --tpu) tpu="$2"; shift 2 ;;
    --zone) zone="$2"; shift 2 ;;
    --project) project="$2"; shift 2 ;;
    --repo) repo="$2"; shift 2 ;;
    --setup) setup=1; shift ;;
    --env) envs+=("$2"); shift 2 ;;
    --dry_run) dry_run=1; shift ;;
    --) shift; break ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (put the class-jax command after --)" >&2; exit 2 ;;
  esac
done
if [[ -z "$tpu" || -z "$zone" || $# -eq 0 ]]; then
  echo "usage: $0 --tpu NAME[,NAME...] --zone ZONE [options] -- COMMAND [ARGS...]" >&2
  exit 2
fi

remote="cd ${repo}"
if [[ "$setup" -eq 1 ]]; then
  remote+=" && python3 -m pip install --quiet -e '.[tpu]'"
fi
remote+=" &&"
for kv in "${envs[@]+"${envs[@]}"}"; do
  remote+=" $(printf '%q' "$kv")"
done
remote+=" python3 -m class_jax.cli"
for arg in "$@"; do
  remote+=" $(printf '%q' "$arg")"
done

project_flag=()
if [[ -n "$project" ]]; then project_flag=(--project "$project"); fi
pids=()
IFS=',' read -r -a nodes <<<"$tpu"
for node in "${nodes[@]}"; do
  cmd=(gcloud compute tpus tpu-vm ssh "$node" --zone "$zone" "${project_flag[@]+"${project_flag[@]}"}" --worker=all
       --command "$remote")
  if [[ "$dry_run" -eq 1 ]]; then
    printf '%q ' "${cmd[@]}"; echo
  else
    "${cmd[@]}" &
    pids+=("$!")
  fi
done
status=0
for pid in "${pids[@]+"${pids[@]}"}"; do
  wait "$pid" || status=$?
done
exit "$status"
