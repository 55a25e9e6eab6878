#!/usr/bin/env bash
# The device checks of issues #28 and #29, prepared on CPU to run once on a lent GPU
# (its image: JAX with CUDA, flax, optax, orbax, chex; no TensorFlow, no registry).
#
#   bash benchmarks/gpu_check.sh OUT_DIR [SECONDS]
#
# In the order that matters most if the lease ends early (each part has its own time
# limit; everything lands in OUT_DIR as it finishes):
#  1. the core install against the machine's JAX (`pip install --no-deps --no-index .`),
#     and the VAE and PixelCNN digits configs trained with it, with no flag and no
#     environment variable of ours (#28): OUT_DIR/core_{vae,pixelcnn}/eval.json;
#  2. the #29 targets: the MNIST MLP VAE at batch 100 with steps_per_loop 1 and 50, and
#     PixelCNN on MNIST at batch 256 in bfloat16 (MFU): OUT_DIR/targets.jsonl; then (#42)
#     the same VAE with EMA inside the 50-step dispatch, the sampler suite under jit
#     (OUT_DIR/samplers.jsonl) and the EDM / VQ-VAE train steps in bfloat16;
#  3. `python -m gm_jax.bench --all` in float32, then in bfloat16:
#     OUT_DIR/bench_gpu_{float32,bfloat16}.jsonl;
#  4. with what is left of SECONDS (default 780), the blocked paper rows (IWAE k = 50 one
#     and two layers, PixelCNN, HVAE) through benchmarks/papers/gpu_rows.sh, resuming
#     from GPU_ROWS_RESUME when set.
# Needs in the repository root: .gmdata/exported/mnist_offline.npz (see gpu_rows.sh) for
# parts 2 and 4, and .whl/ with the wheels the image lacks (ml_collections, tensorboardX).
# GPU_CHECK_QUICK=1 shrinks every part to a smoke run on the digits, one config in part 3
# and no part 4 (how it was tried on CPU).
set -u
py=${PYTHON:-python3}
out=$(mkdir -p "$1" && cd "$1" && pwd); budget=${2:-780}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
start=$(date +%s)
left() { echo $(( budget - ($(date +%s) - start) )); }
quick=${GPU_CHECK_QUICK:-0}
if [ "$quick" = 1 ]; then steps=4; train=20; bench_steps=4; else steps=60; train=2000; bench_steps=60; fi
# Timed seconds a bench row gets (bench's default, 15, would not fit 20 configs x 2 dtypes
# in the lease): 10 for the targets (5 s a round a side), 4 for --all (2 s a round).
if [ "$quick" = 1 ]; then target_s=0; all_s=0; else target_s=10; all_s=4; fi
log() { echo "[gpu_check $(( $(date +%s) - start )) s] $*" | tee -a "$out/gpu_check.log"; }

# 1. The core install, then training with nothing set.
site=/tmp/gm_jax_core_site
rm -rf "$site"
if compgen -G ".whl/*.whl" > /dev/null; then
  $py -m pip install -q --no-index --no-deps --no-compile --target "$site" .whl/*.whl
fi
$py -m pip install -q --no-index --no-deps --no-build-isolation --target "$site" . \
  > "$out/core_install.log" 2>&1 || log "core install failed (core_install.log)"
export PYTHONPATH=$site
# From /tmp: in the repository root, Python would import the checkout, not the core install.
(cd /tmp && $py -) > "$out/versions.txt" 2>&1 <<'EOF'
import importlib, jax
for m in ['jax', 'jaxlib', 'flax', 'optax', 'orbax.checkpoint', 'chex', 'gm_jax']:
  mod = importlib.import_module(m)
  print(m, getattr(mod, '__version__', '?'), getattr(mod, '__file__', ''))
print('devices', jax.devices())
try:
  import tensorflow  # noqa: F401
  print('tensorflow present')
except ImportError:
  print('no tensorflow')
EOF
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >> "$out/versions.txt" 2>&1
for model in vae pixelcnn; do
  log "core: $model"
  (cd /tmp && env -u GM_JAX_CPU_FLAGS -u XLA_FLAGS timeout 150 $py -m gm_jax.main \
      --config="$root/configs/$model.py" --workdir="$out/core_$model" \
      --config.num_train_steps=$train --config.progress_bar=False) \
    > "$out/core_$model.log" 2>&1 || log "core $model exited $?"
done
unset PYTHONPATH

# 2. The #29 targets.
mnist="--config.dataset=mnist_offline --config.data_dir=$root/.gmdata"
[ "$quick" = 1 ] && mnist=""  # the smoke run trains on the embedded digits
for k in 1 50; do
  log "target: MNIST MLP VAE, batch 100, steps_per_loop $k"
  timeout 120 $py -m gm_jax.bench --config=configs/vae.py $mnist --config.batch_size=100 \
    --config.steps_per_loop=$k --config.log_every=50 --config.eval_every=500 \
    --config.checkpoint_every=500 --steps $(( steps * 5 )) --min_seconds $target_s \
    --rounds 2 --out "$out/targets.jsonl" \
    > /dev/null 2>> "$out/targets.log" || log "exited $?"
done
log "target: PixelCNN on MNIST, batch 256, bfloat16"
timeout 180 $py -m gm_jax.bench --config=configs/pixelcnn.py $mnist --config.batch_size=256 \
  --config.compute_dtype=bfloat16 --steps $steps --min_seconds $target_s --rounds 2 \
  --out "$out/targets.jsonl" \
  > /dev/null 2>> "$out/targets.log" || log "exited $?"

# 2b. This turn's additions (#42): EMA inside the multi-step dispatch, the sampler suite
# under jit, the EDM and VQ-VAE train steps in bfloat16 (part 3 covers them again in --all).
log "EMA: MNIST MLP VAE, steps_per_loop 50, ema_decay 0.999"
timeout 120 $py -m gm_jax.bench --config=configs/vae.py $mnist --config.batch_size=100 \
  --config.steps_per_loop=50 --config.ema_decay=0.999 --config.log_every=50 \
  --config.eval_every=500 --config.checkpoint_every=500 --steps $(( steps * 5 )) \
  --min_seconds $target_s --rounds 2 --out "$out/targets.jsonl" \
  > /dev/null 2>> "$out/targets.log" || log "exited $?"
log "sampler suite under jit (EDM U-Net, batch 256, 10 steps)"
sampler_batch=256; [ "$quick" = 1 ] && sampler_batch=4
timeout 120 $py benchmarks/gpu_samplers.py --out "$out/samplers.jsonl" --batch $sampler_batch \
  > /dev/null 2>> "$out/samplers.log" || log "exited $?"
for cfg in edm vqvae; do
  [ -e "configs/$cfg.py" ] || continue
  log "bfloat16 train step: $cfg"
  timeout 120 $py -m gm_jax.bench --config=configs/$cfg.py --config.compute_dtype=bfloat16 \
    --steps $steps --min_seconds $target_s --rounds 2 --out "$out/targets.jsonl" \
    > /dev/null 2>> "$out/targets.log" || log "exited $?"
done

# 3. Every config, float32 then bfloat16.
for dtype in float32 bfloat16; do
  t=$(left); [ "$t" -lt 120 ] && { log "no time for bench $dtype"; break; }
  log "bench --all $dtype (up to $(( t - 60 )) s)"
  which="--all"; [ "$quick" = 1 ] && which="--config=configs/vae.py"
  timeout $(( t - 60 )) $py -m gm_jax.bench $which --config.compute_dtype=$dtype \
    --steps $bench_steps --rounds 2 --min_seconds $all_s --out "$out/bench_gpu_$dtype.jsonl" \
    > /dev/null 2>> "$out/bench.log" || log "bench $dtype exited $?"
done

# 4. The blocked paper rows with what is left.
t=$(left)
if [ "$quick" != 1 ] && [ "$t" -gt 120 ] && [ -e .gmdata/exported/mnist_offline.npz ]; then
  log "paper rows for $(( t - 60 )) s"
  GPU_ROWS_DEADLINE=$(( t - 30 )) bash benchmarks/papers/gpu_rows.sh "$out/papers" $(( t - 90 )) \
    iwae_table1:iwae_k50:120000:--set=batch_size=250 \
    iwae_table1:iwae_k50_2layer:110000:--set=batch_size=250 \
    pixelcnn:pixelcnn:25000:--set=batch_size=256,--set=compute_dtype=\'bfloat16\' \
    hierarchical_vae:hvae:20000:--set=iwae_samples=5000 > "$out/papers.log" 2>&1
fi
log "done"
