"""Removes `# pylint: disable=...` (and `enable`) comments (no pylint runs here; ruff and mypy do).

    python tools/strip_pylint.py [--check] PATH...

A comment on a line of its own is deleted with its line; a trailing one is cut from its
line (with the spaces before it). Where a comment carries more than the pylint part, as in
`# noqa: E402  pylint: disable=wrong-import-position`, only the pylint part goes. Comments
are found with `tokenize`, so `#` inside strings is never touched. Each file's AST is
compared before and after (`ast.dump`, which has no comments in it) and a file whose AST
would change is left unwritten and reported; the exit status is 1 then. `--check` writes
nothing and exits 1 if any file still has such a comment.
"""

import argparse
import ast
import io
import os
import re
import sys
import tokenize

_PYLINT = re.compile(r'\s*pylint:\s*(dis|en)able(-next)?=[\w,\- ]*?(?=\s{2,}|\s*#|\s*$)')


def _python_files(paths):
  for path in paths:
    if os.path.isdir(path):
      for root, _, names in os.walk(path):
        yield from (os.path.join(root, n) for n in sorted(names) if n.endswith('.py'))
    elif path.endswith('.py'):
      yield path


def strip(source: str) -> str:
  """Returns `source` without its pylint-disable comments (see the module docstring)."""
  lines = source.splitlines(keepends=True)
  edits = {}  # line index -> (column of the comment, the comment's replacement or None)
  for tok in tokenize.generate_tokens(io.StringIO(source).readline):
    if tok.type != tokenize.COMMENT or 'pylint:' not in tok.string:
      continue
    row, col = tok.start
    # `#  # why` keeps `# why`.
    body = _PYLINT.sub('', tok.string[1:]).strip().lstrip('#').strip()
    edits[row - 1] = (col, f'# {body}' if body else None)
  for i, (col, comment) in edits.items():
    line = lines[i]
    end = '\n' if line.endswith('\n') else ''
    code = line[:col].rstrip()
    if not code and comment is None:
      lines[i] = ''  # a whole-line comment: the line goes
    elif comment is None:
      lines[i] = code + end
    else:
      lines[i] = (f'{code}  {comment}' if code else line[:col] + comment) + end
  return ''.join(lines)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('paths', nargs='+')
  parser.add_argument('--check', action='store_true', help='write nothing; exit 1 if any remain')
  args = parser.parse_args(argv)
  changed, failed, removed = 0, 0, 0
  for path in _python_files(args.paths):
    with open(path, encoding='utf-8') as f:
      before = f.read()
    after = strip(before)
    if after == before:
      continue
    n = before.count('pylint:') - after.count('pylint:')
    if args.check:
      print(f'{path}: {n} pylint comment(s)')
      changed += 1
      continue
    if ast.dump(ast.parse(before)) != ast.dump(ast.parse(after)):
      print(f'{path}: AST would change; left as is', file=sys.stderr)
      failed += 1
      continue
    with open(path, 'w', encoding='utf-8') as f:
      f.write(after)
    changed += 1
    removed += n
  if args.check:
    return 1 if changed else 0
  print(
    f'strip_pylint: {removed} comment(s) removed from {changed} file(s); AST unchanged in each'
    + (f'; {failed} file(s) refused' if failed else '')
  )
  return 1 if failed else 0


if __name__ == '__main__':
  sys.exit(main())
