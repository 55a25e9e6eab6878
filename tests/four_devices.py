"""One subprocess with 4 CPU devices whose JSON report several test modules read.

JAX fixes its device count when it starts, so the 4-device checks run in a fresh
process; each such process pays its start-up (imports, backend, the first programs) of
~4 CPU-s. The checks of tests/parallel/test_sharded_eval.py,
tests/train/test_loop_parallel.py and tests/evaluate/test_feature_stats.py share one:
`report` runs it once per pytest process, for whichever of their tests comes first.
Their modules are one xdist group (`GROUP`), so under `--dist loadgroup` one pytest
worker runs them all (~55 CPU-s cold).
"""

import json
import os
import sys

import pytest

from tests import multidevice

NUM_DEVICES = 4
GROUP = pytest.mark.xdist_group('four_devices')
_REPORT: dict = {}


def report(tmp_path_factory) -> dict:
  """The subprocess's report: `{'sharded_eval': ..., 'loop_parallel': ..., 'feature_stats': ...}`
  (each module's worker function's output), computed once per pytest process."""
  if 'failed' in _REPORT:  # computed and failed for an earlier test: not again
    pytest.fail(f'the 4-device subprocess failed: {_REPORT["failed"]}')
  if not _REPORT:
    workdir = str(tmp_path_factory.mktemp('four_devices'))
    try:
      _REPORT.update(multidevice.run_report(__file__, [workdir], NUM_DEVICES))
    except AssertionError as e:
      _REPORT['failed'] = str(e)
      raise
  return _REPORT


def _main(workdir: str) -> dict:
  from tests.evaluate import test_feature_stats
  from tests.parallel import test_sharded_eval
  from tests.train import test_loop_parallel

  out = {}
  for name, worker in (
    ('sharded_eval', test_sharded_eval.worker),
    ('loop_parallel', test_loop_parallel.worker),
  ):
    os.makedirs(os.path.join(workdir, name))
    out[name] = worker(os.path.join(workdir, name))
  out['feature_stats'] = test_feature_stats.worker()
  return out


if __name__ == '__main__':
  print(json.dumps(_main(sys.argv[1])))
