"""WaveNet-style causal-conv character model on the Python reference text.

Run:
    python -m gm_jax.main --config=configs/char_lm.py --workdir=/tmp/char_lm

`pydoc_chars`: 128-byte windows of `pydoc_data.topics` (vocabulary 256 bytes); every
10th topic is test. Exact likelihood: `test_bits_per_char` (= test_bpd) is
-log2 p(window) / 128 on the test topics, no bound. `samples.txt` holds text drawn
with the cached sampler (Fast WaveNet queues).

Two stacks of dilations 1..32: receptive field 127 bytes, i.e. the whole window.

Measured (seed 0, 1,000 steps, 2-core CPU shared with other jobs, ~10 minutes wall):
test 1.988 bits/char (stderr 0.049 over test windows), best validation 1.832 at the
last step (still improving), 1.76 train steps/s; cached sampling of 8 x 400 bytes
~5,400 bytes/s. Reference point: uniform over 256 bytes is 8 bits/char.
"""

from configs import common


def get_config():
  config = common.likelihood_config(
    model='char_lm',
    dataset='pydoc_chars',
    batch_size=16,
    num_train_steps=1000,
    learning_rate=2e-3,
    warmup_steps=100,
    grad_clip_norm=10.0,
  )
  config.update(validation_fraction=0.05, eval_every=200)
  config.update(
    channels=64, dilations=(1, 2, 4, 8, 16, 32, 1, 2, 4, 8, 16, 32), kernel_size=2, dropout_rate=0.1
  )
  config.update(num_samples=8, sample_length=400, sample_temperature=0.8)
  return config
