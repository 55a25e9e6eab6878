"""benchmarks/train_step.py: one real (tiny) timing run, and the architecture check."""

import json

import pytest

torch = pytest.importorskip('torch')

from benchmarks import train_step  # noqa: E402
from benchmarks.torch_ref import vae as torch_vae  # noqa: E402


def test_one_case_writes_json_and_markdown(tmp_path):
  out = str(tmp_path / 'ts')
  train_step.main(
    ['--cases', 'vae_mlp_digits', '--repeats', '2', '--min_seconds', '0.05', '--out', out]
  )
  (row,) = [json.loads(line) for line in open(out + '.jsonl')]
  assert row['model'] == 'vae_mlp_digits' and row['batch'] == 64 and row['shape'] == [8, 8, 1]
  assert row['num_params'] == row['torch_num_params'] == 1_141_856
  assert row['jax_steps_per_s'] > 0 and row['torch_steps_per_s'] > 0
  assert row['ratio'] == pytest.approx(row['jax_steps_per_s'] / row['torch_steps_per_s'], rel=2e-3)
  assert row['jax_step_bytes'] > 4 * row['num_params']  # at least the parameters
  # Both start from the same untrained state: losses near 64 ln 17 = 181.3 nats.
  assert 170 < row['first_loss_jax'] < 220 and 170 < row['first_loss_torch'] < 220
  assert '| vae_mlp_digits | 64 | 8x8x1 | 1,141,856 |' in open(out + '.md').read()
  # The machine's state while the case ran is recorded with the row.
  assert row['load_avg_1m'] >= 0 and row['others_cpu_cores'] >= 0


def test_other_processes_cores_subtract_this_process():
  # 10 s of wall time, 25 busy CPU seconds on the machine, 5 of them this process's.
  assert train_step._others_cores((0.0, 100.0, 1.0), (10.0, 125.0, 6.0)) == pytest.approx(2.0)
  assert train_step._others_cores(None, (10.0, 125.0, 6.0)) is None
  assert train_step._others_cores((0.0, 100.0, 1.0), (10.0, 101.0, 6.0)) == 0.0


def test_a_replica_with_other_weights_is_refused(monkeypatch):
  original = torch_vae.make_step

  def make_step(config, info, batch):
    step, module = original(config, info, batch)
    module.extra = torch.nn.Linear(3, 5)  # a layer the Flax model does not have
    return step, module

  monkeypatch.setattr(torch_vae, 'make_step', make_step)
  case = next(c for c in train_step.CASES if c.name == 'vae_mlp_digits')
  with pytest.raises(AssertionError, match='other weights'):
    train_step.run_case(case, repeats=1, min_seconds=0.01)


def test_unknown_case_is_a_usage_error(capsys):
  with pytest.raises(SystemExit):
    train_step.main(['--cases', 'no_such_model'])
  assert 'unknown case' in capsys.readouterr().err
