#!/usr/bin/env bash
# The accelerator figures of bench/RESULTS.md in one command, for a single-GPU host with JAX's CUDA backend, torch
# and transformers installed (faiss and seqio are not needed: search runs the JAX path alone and encoding skips the
# tokenising pipeline row).
#
#   bash bench/gpu_suite.sh OUT_DIR [PART ...]
#
# Parts (default: all, about 20 minutes with compilation, so more than one device call):
#   step          mT5-large bfloat16 FiD step with full remat, class_jax against HF;
#   step_cudnn    the same step with the einsum attention against cuDNN's fused attention (no HF), and a
#                 profile of the einsum step (time per XLA operation in the JSON; trace and HLO in OUT_DIR/profile);
#   step_minimal  the "minimal" remat policy;
#   step_cudnn_minimal  cuDNN's fused attention with the "minimal" policy (no HF), the variant that
#                 bench/gpu_step_model.py predicts to reach 45% MFU;
#   search        1M and 100k rows, float32 / 256 queries and float16 / 32 queries, default and 32768-row steps;
#   encode        corpus encoding, mT5-large; decode: greedy FiD decoding, mT5-large.
#
# Each part runs as its own process under a time limit, so one that fails or overruns leaves the others' results;
# every part writes OUT_DIR/<part>.json and appends its output to OUT_DIR/suite.log.
set -u
out_dir=${1:?usage: bash bench/gpu_suite.sh OUT_DIR [PART ...]}
shift
parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(step step_cudnn_minimal step_cudnn search encode decode step_minimal)
mkdir -p "$out_dir"
cd "$(dirname "$0")/.."
# JAX must not take 75% of the GPU up front: the HF side runs in the same process.
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
python=${PYTHON:-python3}
log=$out_dir/suite.log

run() {  # NAME LIMIT_S SCRIPT ARGS...
  local name=$1 limit=$2 script=$3
  shift 3
  echo "=== $name: $script $* (limit ${limit}s, $(date -u +%T))" | tee -a "$log"
  timeout "$limit" "$python" "$script" "$@" --out "$out_dir/$name.json" 2>&1 \
    | grep -v -e "Warning" -e "warnings.warn" | tee -a "$log"
  echo "=== $name: exit ${PIPESTATUS[0]} ($(date -u +%T))" | tee -a "$log"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  "$python" -c "import jax, flax, optax, torch, transformers; print('jax', jax.__version__, jax.devices(), \
'flax', flax.__version__, 'optax', optax.__version__, 'torch', torch.__version__, 'transformers', \
transformers.__version__)"; } 2>&1 | tee -a "$log"

for part in "${parts[@]}"; do
  case $part in
    step) run step 300 bench/model_step.py --size large --dtype bfloat16 --remat full --batch 8 --passages 16 ;;
    step_cudnn)
      run step_cudnn 360 bench/model_step.py --size large --dtype bfloat16 --remat full --batch 8 --passages 16 \
        --skip_hf --compare_attention_kernel cudnn --profile_dir "$out_dir/profile" ;;
    search)
      run search_f32 150 bench/search.py --skip_faiss --encode_passages 0 --chunk_rows auto 32768
      run search_f16 150 bench/search.py --skip_faiss --encode_passages 0 --device_dtype float16 --queries 32 \
        --chunk_rows auto 32768 ;;
    encode) run encode 180 bench/encode.py --size large --dtype bfloat16 --batch 512 --pipeline_passages 0 ;;
    decode) run decode 300 bench/decode.py --size large --dtype bfloat16 --batch 32 --passages 16 ;;
    step_minimal)
      run step_minimal 240 bench/model_step.py --size large --dtype bfloat16 --remat minimal --batch 8 --passages 16 \
        --skip_hf ;;
    step_cudnn_minimal)
      run step_cudnn_minimal 200 bench/model_step.py --size large --dtype bfloat16 --remat minimal --batch 8 \
        --passages 16 --skip_hf --attention_kernel cudnn ;;
    *) echo "unknown part: $part (expected step, step_cudnn_minimal, step_cudnn, search, encode, decode," \
         "step_minimal)" | tee -a "$log"
       exit 2 ;;
  esac
done
