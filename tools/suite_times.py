"""Where the test suite's time goes, from `GM_JAX_TEST_CPU_LOG` (tests/conftest.py).

    GM_JAX_TEST_CPU_LOG=/tmp/cpu.jsonl make test
    python tools/suite_times.py /tmp/cpu.jsonl [--top 20]

Prints CPU and wall seconds per test file (largest CPU first), per xdist worker, and the
slowest tests. CPU seconds (user + sys of the pytest process and its finished
subprocesses) barely change with other load on the machine; wall seconds do.
"""

import argparse
import collections
import json


def load(path: str) -> list[dict]:
  """The JSON lines of `path`, one per test."""
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def by_file(records: list[dict]) -> list[tuple[str, int, float, float]]:
  """`(file, tests, cpu_s, wall_s)` per test file, largest CPU first."""
  sums: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0, 0.0])
  for r in records:
    s = sums[r['test'].split('::')[0]]
    s[0] += 1
    s[1] += r['cpu_s']
    s[2] += r['wall_s']
  rows = [(f, int(n), cpu, wall) for f, (n, cpu, wall) in sums.items()]
  return sorted(rows, key=lambda row: -row[2])


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('log')
  parser.add_argument('--top', type=int, default=20)
  args = parser.parse_args(argv)
  records = load(args.log)
  files = by_file(records)
  print(f'{"file":<60} {"tests":>5} {"cpu_s":>8} {"wall_s":>8}')
  for f, n, cpu, wall in files:
    print(f'{f:<60} {n:>5} {cpu:>8.1f} {wall:>8.1f}')
  total_cpu = sum(r['cpu_s'] for r in records)
  print(f'{"total":<60} {len(records):>5} {total_cpu:>8.1f}')
  workers: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
  for r in records:
    workers[r['worker']][0] += r['cpu_s']
    workers[r['worker']][1] += r['wall_s']
  for w, (cpu, wall) in sorted(workers.items()):
    print(f'worker {w}: {cpu:.1f} s CPU, {wall:.1f} s wall')
  print(f'\nslowest {args.top} tests (CPU):')
  for r in sorted(records, key=lambda r: -r['cpu_s'])[: args.top]:
    print(f'{r["cpu_s"]:8.1f} {r["wall_s"]:8.1f}  {r["test"]}')


if __name__ == '__main__':
  main()
