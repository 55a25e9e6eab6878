#!/usr/bin/env bash
# One-off mechanical clean-up for the lint gates (#44), run once by hand after merging:
#   make lint-fix        (or: PATH=.venv/bin:$PATH tools/lint_fixups.sh)
# 1. strips the `# pylint: disable=...` comments (tools/strip_pylint.py; each file's AST
#    is checked unchanged, a file whose AST would change is refused and named);
# 2. `ruff check --fix`: ruff's safe fixes only (import order, `X | None`, `collections.abc`,
#    unused `noqa`); F401 is unfixable in pyproject.toml, so no import is ever dropped;
# 3. `ruff format` (2-space indents, 100 columns, single quotes);
# then prints what is left for a human: `ruff check` and `mypy` (exit status 0 either way,
# so review `git diff` and those lists, run the tests, commit).
set -euo pipefail
cd "$(dirname "$0")/.."
PATHS=(gm_jax tests benchmarks configs tools)
PYTHON=${PYTHON:-python3}
command -v ruff >/dev/null || { echo 'ruff not found: pip install ruff==0.17.5 (extra [lint])' >&2; exit 1; }

echo '== 1/3 strip pylint comments'
"$PYTHON" tools/strip_pylint.py "${PATHS[@]}"
echo '== 2/3 ruff check --fix (safe fixes)'
ruff check --fix --exit-zero "${PATHS[@]}" >/dev/null
# Rewriting `Optional[X]` as `X | None` (UP045) leaves `from typing import Optional`
# unused. F401 is unfixable (an unused import may be a re-export or a side effect), so
# drop those typing-only leftovers here, in files whose every F401 is such an import.
mapfile -t TYPING_ONLY < <(ruff check --select F401 --output-format json --exit-zero "${PATHS[@]}" |
  "$PYTHON" -c '
import collections, json, re, sys
by_file = collections.defaultdict(list)
for d in json.load(sys.stdin):
  by_file[d["filename"]].append(re.match(r"`(typing|collections\.abc)\.", d["message"]) is not None)
print("\n".join(f for f, typing_only in by_file.items() if all(typing_only)))')
if [[ ${#TYPING_ONLY[@]} -gt 0 && -n ${TYPING_ONLY[0]} ]]; then
  ruff check --isolated --select F401 --fix --exit-zero "${TYPING_ONLY[@]}" >/dev/null
  echo "removed typing imports left unused by UP045 in ${#TYPING_ONLY[@]} file(s)"
  ruff check --fix --exit-zero "${PATHS[@]}" >/dev/null  # re-sorts what that removal left
fi
echo '== 3/3 ruff format'
ruff format "${PATHS[@]}"

echo '== left for a human: ruff'
ruff check --statistics "${PATHS[@]}" || true
ruff check --output-format concise "${PATHS[@]}" || true
ruff format --check "${PATHS[@]}" >/dev/null || echo 'ruff format --check still fails'
echo '== left for a human: mypy'
mypy || true
