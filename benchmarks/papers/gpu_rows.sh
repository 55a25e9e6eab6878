#!/usr/bin/env bash
# Runs paper rows side by side on one GPU machine that has JAX but no TensorFlow.
#
#   bash benchmarks/papers/gpu_rows.sh OUT_DIR SECONDS ROW...
#
# ROW is SCRIPT:KEY:STEPS[:--set=F=V,--set=F=V], e.g. iwae_table1:vae_k1:100000:--set=batch_size=500
# (benchmarks/papers/SCRIPT.py, row KEY, cosine schedule over STEPS, row-only overrides). Each row trains for at most SECONDS of wall time
# (config.max_train_seconds: the step in hand is validated, checkpointed and evaluated),
# all rows at once, one process each, on the same GPU.
#
# Needs, in the repository root:
#   .gmdata/exported/mnist_offline.npz  written where tfds works, by
#       python -m gm_jax.data.exported --dataset mnist_offline --data_dir ~/tensorflow_datasets \
#         --out .gmdata/exported/mnist_offline.npz
#   .whl/  wheels of what the machine lacks (here: ml_collections, tensorboardX).
# Writes OUT_DIR/results.tar.gz (each row's eval.json, metrics.jsonl, pictures, log) and
# prints each row's table.
# Optional: PYTHON (default python3), GPU_ROWS_SET (extra --set=FIELD=VALUE words),
# GPU_ROWS_WORKDIR (default /tmp/gpu_rows), GPU_ROWS_DEADLINE (seconds, then kill and pack),
# GPU_ROWS_RESUME (a folder of earlier <script>-<key>.tar.gz files: each row starts from
# its newest checkpoint in there, so training adds up over short leases).
set -u
py=${PYTHON:-python3}
out=$1; seconds=$2; shift 2
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
if compgen -G ".whl/*.whl" > /dev/null; then
  $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false GM_JAX_CPU_FLAGS=0
$py - <<'EOF' || exit 1
import importlib, jax
for m in ['jax', 'jaxlib', 'flax', 'optax', 'orbax.checkpoint', 'chex', 'ml_collections', 'numpy', 'sklearn']:
  mod = importlib.import_module(m)
  print(m, getattr(mod, '__version__', '?'))
print('devices', jax.devices())
EOF
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
runs=${GPU_ROWS_WORKDIR:-/tmp/gpu_rows}
mkdir -p "$runs" "$out"
if [ -n "${GPU_ROWS_RESUME:-}" ]; then
  for f in "$GPU_ROWS_RESUME"/*.tar.gz; do
    [ -e "$f" ] && tar xzf "$f" -C "$runs" && echo "resuming from $f"
  done
fi
pids=()
for spec in "$@"; do
  IFS=: read -r script key steps extra <<< "$spec"
  $py "benchmarks/papers/$script.py" --workdir="$runs" --rows="$key" --steps="$steps" \
    --data_dir="$root/.gmdata" --set=max_train_seconds="$seconds" ${GPU_ROWS_SET:-} ${extra//,/ } \
    > "$runs/$script-$key.log" 2>&1 &
  pids+=($!)
done
start=$(date +%s)
while :; do
  alive=0
  for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
  [ $alive = 0 ] && break
  if [ -n "${GPU_ROWS_DEADLINE:-}" ] && [ $(( $(date +%s) - start )) -ge "$GPU_ROWS_DEADLINE" ]; then
    echo "GPU_ROWS_DEADLINE=$GPU_ROWS_DEADLINE s reached: stopping the rows still running"
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    sleep 5
    break
  fi
  sleep 20
  echo "--- $(( $(date +%s) - start )) s"
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
  for spec in "$@"; do
    IFS=: read -r script key steps <<< "$spec"
    tail -n 1 "$runs/$script/$key/metrics.jsonl" 2>/dev/null | cut -c1-160
  done
done
for spec in "$@"; do
  IFS=: read -r script key steps <<< "$spec"
  echo "=== $script $key"
  tail -n 25 "$runs/$script-$key.log"
done
# One archive per row (the results come back as at most 8 files of <= 16 MiB each): its
# outputs, log and newest checkpoint, which GPU_ROWS_RESUME starts from next time.
for spec in "$@"; do
  IFS=: read -r script key steps <<< "$spec"
  dir="$script/$key"
  newest=$(ls -d "$runs/$dir"/checkpoints/[0-9]* 2>/dev/null | sort -t/ -k1 -V | tail -n 1)
  (cd "$runs" && { find "$dir" -name checkpoints -prune -o -type f -print
                   echo "$script-$key.log"
                   [ -n "$newest" ] && find "${newest#$runs/}" -type f; } |
     tar czf "$out/$script-$key.tar.gz" -T -)
done
ls -la "$out"
