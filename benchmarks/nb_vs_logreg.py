"""Generative vs discriminative: naive Bayes against logistic regression.

    python benchmarks/nb_vs_logreg.py --out benchmarks/results/nb_vs_logreg

Four experiments, all on data that ships with scikit-learn or Python:

1. Learning curves (Ng & Jordan, NIPS 2002): test error on digits (train = first
   1,437 of `load_digits()`, test = last 360) as the training set grows from 10
   to 1,437 examples (class-stratified random subsets, several repeats). NB
   (categorical per pixel, the main one; Gaussian, Bernoulli on pixels >= 8 and
   multinomial on pixel "ink" too; sklearn's default smoothing) against
   L2 logistic regression with scikit-learn's default C = 1 (l2 = 1 / m).
2. Double counting: a block of pixels is duplicated k = 1..10 times. NB counts
   the copies as independent evidence, so its log-likelihood ratio for the block
   is multiplied by k; LR shares the weight between copies.
3. Text: paragraphs of `pydoc_data.topics` classified by the reference document
   they come from (7 groups), bag of words; multinomial and Bernoulli NB vs LR,
   hyper-parameters chosen on a validation part of the training paragraphs.
4. Samples from the categorical NB digit model (what "generative" buys), scored
   by an LR trained on real digits.

Writes `results.json` and PNGs into `--out`, and prints the JSON.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import sys
import time

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

import jax
import jax.numpy as jnp
import numpy as np
from sklearn import datasets

from gm_jax.evaluate import calibration
from gm_jax.models import logistic_regression as lr_lib
from gm_jax.models import naive_bayes as nb_lib

NUM_CLASSES = 10
LEVELS = 17
SIZES = (10, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 1437)
# The central 4x4 pixels (rows 2-5, columns 2-5): informative and correlated.
BLOCK = tuple(r * 8 + c for r in range(2, 6) for c in range(2, 6))
LR_STEPS = 100


def load_digits_split():
  x, y = datasets.load_digits(return_X_y=True)
  x, y = x.astype(np.int32), y.astype(np.int32)
  return x[:1437], y[:1437], x[1437:], y[1437:]


def stratified_subset(y, m, rng):
  """m indices, classes in turn (round robin over shuffled per-class lists)."""
  per_class = [rng.permutation(np.flatnonzero(y == c)) for c in range(NUM_CLASSES)]
  order = rng.permutation(NUM_CLASSES)
  idx, pos = [], collections.Counter()
  while len(idx) < m:
    for c in order:
      if len(idx) == m:
        break
      if pos[c] < len(per_class[c]):
        idx.append(per_class[c][pos[c]])
        pos[c] += 1
  return np.sort(np.array(idx))


def metrics_of(log_probs, labels):
  return calibration.classification_metrics(log_probs, labels)


# ---------------------------------------------------------------------------
# 1. Learning curves.


def _fit_nb(variant, x, y):
  if variant == 'categorical':
    return nb_lib.fit_categorical_nb(x, y, num_classes=NUM_CLASSES, num_categories=LEVELS)
  if variant == 'multinomial':  # pixel levels as counts of "ink"
    return nb_lib.fit_multinomial_nb(x, y, num_classes=NUM_CLASSES)
  if variant == 'gaussian':
    return nb_lib.fit_gaussian_nb(x.astype(jnp.float32) / 16, y, num_classes=NUM_CLASSES)
  return nb_lib.fit_bernoulli_nb((x >= 8).astype(jnp.int32), y, num_classes=NUM_CLASSES)


def _nb_input(variant, x):
  if variant == 'gaussian':
    return x.astype(jnp.float32) / 16
  if variant == 'bernoulli':
    return (x >= 8).astype(jnp.int32)
  return x


def learning_curves(xtr, ytr, xte, yte, *, repeats, seed):
  """Test error of NB variants and LR for every training-set size in SIZES."""
  nb_variants = ('categorical', 'gaussian', 'bernoulli', 'multinomial')
  xs_lr, xte_lr = (xtr / 16).astype(np.float32), (xte / 16).astype(np.float32)

  # LR: every subset is the full training set with 0/1 weights, so one
  # compilation serves all sizes, vmapped over the repeats. (Data are passed as
  # arguments: closed-over arrays would become constants that XLA folds.)
  @jax.jit
  def lr_fit_eval(x, y, xt, weights, l2):
    def one(w):
      params, _ = lr_lib.fit_logreg(
        x, y, num_classes=NUM_CLASSES, l2=l2, sample_weight=w, num_steps=LR_STEPS
      )
      return lr_lib.logreg_predict_log_proba(params, xt)

    return jax.vmap(one)(weights)

  @jax.jit
  def nb_eval(x, y, xt, idx):
    out = {}
    for v in nb_variants:

      def one(i, v=v):
        params = _fit_nb(v, x[i], y[i])
        return nb_lib.predict_log_proba(params, _nb_input(v, xt))

      out[v] = jax.vmap(one)(idx)
    return out

  rows = []
  for m in SIZES:
    reps = 1 if m == len(ytr) else repeats
    idx = np.stack(
      [stratified_subset(ytr, m, np.random.default_rng([seed, m, r])) for r in range(reps)]
    )
    weights = np.zeros((reps, len(ytr)), np.float32)
    np.put_along_axis(weights, idx, 1.0, axis=1)
    t0 = time.perf_counter()
    lr_lp = np.asarray(lr_fit_eval(xs_lr, ytr, xte_lr, weights, 1.0 / m))  # sklearn C=1
    nb_lp = {k: np.asarray(v) for k, v in nb_eval(xtr, ytr, xte, idx).items()}
    row = {'m': m, 'repeats': reps}
    for name, lp in [('logreg', lr_lp)] + [(f'nb_{k}', v) for k, v in nb_lp.items()]:
      per_rep = [metrics_of(lp[r], yte) for r in range(reps)]
      err = np.array([1 - p['accuracy'] for p in per_rep])
      row[name] = {
        'error': float(err.mean()),
        'error_std': float(err.std()),
        'log_loss': float(np.mean([p['log_loss'] for p in per_rep])),
        'ece': float(np.mean([p['ece'] for p in per_rep])),
      }
    row['seconds'] = time.perf_counter() - t0
    rows.append(row)
    print(
      f'  m={m:5d}  LR err {row["logreg"]["error"]:.3f}  '
      + '  '.join(f'{k} {row[f"nb_{k}"]["error"]:.3f}' for k in nb_variants),
      file=sys.stderr,
      flush=True,
    )

  crossovers = {v: crossover(rows, f'nb_{v}') for v in nb_variants}
  return {
    'sizes': list(SIZES),
    'repeats': repeats,
    'lr_l2': '1/m (sklearn C=1)',
    'rows': rows,
    'crossover': crossovers,
  }


def crossover(rows, nb_key):
  """Where LR's mean error drops below NB's for good.

  Returns the first grid size from which LR is better at every larger size, and
  the size where the error difference crosses zero, interpolated on log(m)
  between the bracketing grid points (None if LR never overtakes NB, or is
  better already at the smallest size).
  """
  diff = np.array([r['logreg']['error'] - r[nb_key]['error'] for r in rows])
  sizes = np.array([r['m'] for r in rows], np.float64)
  better = diff < 0
  if not better[-1]:
    return {
      'first_m_lr_better_onwards': None,
      'interpolated_m': None,
      'nb_better_at_smallest': bool(diff[0] > 0),
    }
  start = len(better) - 1
  while start > 0 and better[start - 1]:
    start -= 1
  interp = None
  if start > 0:
    d0, d1 = diff[start - 1], diff[start]
    t = d0 / (d0 - d1)
    interp = float(
      np.exp(np.log(sizes[start - 1]) + t * (np.log(sizes[start]) - np.log(sizes[start - 1])))
    )
  return {
    'first_m_lr_better_onwards': int(sizes[start]),
    'interpolated_m': interp,
    'nb_better_at_smallest': bool(diff[0] > 0),
  }


# ---------------------------------------------------------------------------
# 2. Double counting.


def duplicate(x, k, block):
  """Appends k - 1 extra copies of the columns `block` (None: all columns)."""
  cols = x if block is None else x[:, list(block)]
  return np.concatenate([x] + [cols] * (k - 1), axis=1)


def double_counting(xtr, ytr, xte, yte, *, max_k=10):
  out = {}
  for name, block in (('block', BLOCK), ('all', None)):
    width = 64 + (max_k - 1) * (64 if block is None else len(block))

    # LR features zero-padded to the widest k: zero columns keep zero weight,
    # so every k shares one compilation.
    @jax.jit
    def lr_fit_eval(x, y, xt):
      params, _ = lr_lib.fit_logreg(
        x, y, num_classes=NUM_CLASSES, l2=1.0 / len(y), num_steps=LR_STEPS
      )
      return lr_lib.logreg_predict_log_proba(params, xt)

    pad = lambda a: np.pad(a, ((0, 0), (0, width - a.shape[1])))  # noqa: B023  this k's width
    rows = []
    for k in range(1, max_k + 1):
      xk, xtk = duplicate(xtr, k, block), duplicate(xte, k, block)
      nb = nb_lib.fit_categorical_nb(xk, ytr, num_classes=NUM_CLASSES, num_categories=LEVELS)
      nb_lp = np.asarray(nb_lib.predict_log_proba(nb, xtk))
      lr_lp = np.asarray(
        lr_fit_eval(pad(xk / 16).astype(np.float32), ytr, pad(xtk / 16).astype(np.float32))
      )
      row = {'k': k, 'num_features': xk.shape[1]}
      for model, lp in (('nb', nb_lp), ('logreg', lr_lp)):
        met = metrics_of(lp, yte)
        met['mean_confidence'] = float(np.exp(lp).max(1).mean())
        row[model] = met
      rows.append(row)
    out[name] = {'duplicated_columns': list(block) if block else 'all 64', 'rows': rows}
    print(
      f'  {name}: NB ECE k=1 {rows[0]["nb"]["ece"]:.3f} k={max_k} '
      f'{rows[-1]["nb"]["ece"]:.3f}; LR ECE {rows[0]["logreg"]["ece"]:.3f} -> '
      f'{rows[-1]["logreg"]["ece"]:.3f}',
      file=sys.stderr,
      flush=True,
    )
  return out


# ---------------------------------------------------------------------------
# 3. Text: pydoc topics by source document.

# Each pydoc topic is an excerpt of one document of the Python docs.
TOPIC_GROUPS = {
  'simple_stmts': [
    'assert',
    'assignment',
    'augassign',
    'break',
    'continue',
    'del',
    'global',
    'import',
    'nonlocal',
    'pass',
    'raise',
    'return',
    'yield',
  ],
  'compound_stmts': [
    'async',
    'class',
    'compound',
    'else',
    'for',
    'function',
    'if',
    'try',
    'while',
    'with',
  ],
  'expressions': [
    'atom-identifiers',
    'atom-literals',
    'attribute-references',
    'await',
    'binary',
    'bitwise',
    'booleans',
    'calls',
    'comparisons',
    'conversions',
    'dict',
    'exprlists',
    'in',
    'lambda',
    'lists',
    'operator-summary',
    'power',
    'shifting',
    'slicings',
    'subscriptions',
    'unary',
  ],
  'lexical_analysis': [
    'floating',
    'identifiers',
    'id-classes',
    'imaginary',
    'integers',
    'numbers',
    'strings',
  ],
  'datamodel': [
    'attribute-access',
    'callable-types',
    'context-managers',
    'customization',
    'numeric-types',
    'objects',
    'sequence-types',
    'specialnames',
    'types',
  ],
  'executionmodel': ['dynamic-features', 'exceptions', 'execmodel', 'naming'],
  'library': [
    'bltin-code-objects',
    'bltin-ellipsis-object',
    'bltin-null-object',
    'bltin-type-objects',
    'debugger',
    'formatstrings',
    'specialattrs',
    'string-methods',
    'truth',
    'typesfunctions',
    'typesmapping',
    'typesmethods',
    'typesmodules',
    'typesseq',
    'typesseq-mutable',
  ],
}
MIN_WORDS = 8


def pydoc_paragraphs():
  """(paragraphs, group labels, group names); duplicates across topics removed."""
  from pydoc_data import topics

  names = list(TOPIC_GROUPS)
  group_of = {t: g for g, ts in TOPIC_GROUPS.items() for t in ts}
  seen = collections.defaultdict(set)
  for topic, text in topics.topics.items():
    if topic not in group_of:
      continue  # a topic added in a newer Python: not grouped, skipped
    for para in re.split(r'\n\s*\n', text):
      para = ' '.join(para.split())
      if len(para.split()) >= MIN_WORDS:
        seen[para].add(group_of[topic])
  # A paragraph quoted in two documents' topics is ambiguous: drop it.
  items = sorted((p, next(iter(g))) for p, g in seen.items() if len(g) == 1)
  return [p for p, _ in items], np.array([names.index(g) for _, g in items]), names


def bag_of_words(train_docs, docs_list, min_df=2):
  tok = lambda d: re.findall(r'[a-z_][a-z0-9_]*', d.lower())
  df = collections.Counter(w for d in train_docs for w in set(tok(d)))
  vocab = sorted(w for w, c in df.items() if c >= min_df)
  index = {w: i for i, w in enumerate(vocab)}
  out = []
  for docs in docs_list:
    x = np.zeros((len(docs), len(vocab)), np.float32)
    for n, d in enumerate(docs):
      for w in tok(d):
        if w in index:
          x[n, index[w]] += 1
    out.append(x)
  return vocab, out


def text_task(*, seed):
  docs, labels, names = pydoc_paragraphs()
  labels = labels.astype(np.int32)
  rng = np.random.default_rng(seed)
  test_mask = np.zeros(len(docs), bool)
  for c in range(len(names)):  # stratified 70 / 30 split
    idx = rng.permutation(np.flatnonzero(labels == c))
    test_mask[idx[: int(round(0.3 * len(idx)))]] = True
  tr, te = np.flatnonzero(~test_mask), np.flatnonzero(test_mask)
  # Hyper-parameters on the last 20% (in shuffled order) of the training paragraphs.
  tr = rng.permutation(tr)
  n_fit = int(round(0.8 * len(tr)))
  vocab, (x_tr, x_te) = bag_of_words(
    [docs[i] for i in tr], [[docs[i] for i in tr], [docs[i] for i in te]]
  )
  y_tr, y_te = labels[tr], labels[te]
  c = len(names)
  fit_part = np.arange(len(tr)) < n_fit
  out = {
    'num_paragraphs': len(docs),
    'num_train': len(tr),
    'num_test': len(te),
    'vocab_size': len(vocab),
    'groups': names,
    'group_counts': np.bincount(labels, minlength=c).tolist(),
    'majority_baseline_accuracy': float(np.mean(y_te == np.bincount(y_tr).argmax())),
  }

  def nb_fit(kind, x, y, alpha):
    if kind == 'multinomial':
      return nb_lib.fit_multinomial_nb(x, y, num_classes=c, alpha=alpha)
    return nb_lib.fit_bernoulli_nb((x > 0).astype(np.int32), y, num_classes=c, alpha=alpha)

  def nb_in(kind, x):
    return x if kind == 'multinomial' else (x > 0).astype(np.int32)

  for kind in ('multinomial', 'bernoulli'):
    alphas = (0.01, 0.1, 0.3, 1.0)
    val = [
      metrics_of(
        nb_lib.predict_log_proba(
          nb_fit(kind, x_tr[fit_part], y_tr[fit_part], a), nb_in(kind, x_tr[~fit_part])
        ),
        y_tr[~fit_part],
      )['log_loss']
      for a in alphas
    ]
    alpha = alphas[int(np.argmin(val))]
    params = nb_fit(kind, x_tr, y_tr, alpha)
    out[f'nb_{kind}'] = dict(
      metrics_of(nb_lib.predict_log_proba(params, nb_in(kind, x_te)), y_te), alpha=alpha
    )

  # LR on log(1 + counts); l2 chosen on validation, vmapped, then refitted on all
  # training paragraphs through the same weighted (and compiled) function.
  feats = lambda x: np.log1p(x).astype(np.float32)
  l2s = jnp.array([1e-2, 3e-3, 1e-3, 3e-4, 1e-4])

  f_tr = feats(x_tr)

  @jax.jit
  def lr_fit(x, y, weights, l2):
    return lr_lib.fit_logreg(x, y, num_classes=c, l2=l2, sample_weight=weights, num_steps=200)[0]

  w_fit = fit_part.astype(np.float32)
  val_params = jax.vmap(lambda l2: lr_fit(f_tr, y_tr, w_fit, l2))(l2s)
  val = [
    metrics_of(
      lr_lib.logreg_predict_log_proba(
        jax.tree.map(lambda a, i=i: a[i], val_params), feats(x_tr[~fit_part])
      ),
      y_tr[~fit_part],
    )['log_loss']
    for i in range(len(l2s))
  ]
  l2 = float(l2s[int(np.argmin(val))])
  params = lr_fit(f_tr, y_tr, np.ones(len(tr), np.float32), l2)
  out['logreg'] = dict(
    metrics_of(lr_lib.logreg_predict_log_proba(params, feats(x_te)), y_te), l2=l2
  )
  print(
    f'  text: MNB acc {out["nb_multinomial"]["accuracy"]:.3f}  BNB acc '
    f'{out["nb_bernoulli"]["accuracy"]:.3f}  LR acc {out["logreg"]["accuracy"]:.3f}',
    file=sys.stderr,
    flush=True,
  )
  return out


# ---------------------------------------------------------------------------
# 4. Samples from the NB digit model.


def nb_samples(xtr, ytr, xte, yte, *, seed, per_class=9):
  params = nb_lib.fit_categorical_nb(xtr, ytr, num_classes=NUM_CLASSES, num_categories=LEVELS)
  key = jax.random.key(seed)
  samples = np.stack(
    [
      np.asarray(nb_lib.sample(params, jax.random.fold_in(key, c), label=c, num=per_class))
      for c in range(NUM_CLASSES)
    ]
  )  # [C, S, 64]
  probs = np.exp(np.asarray(params.log_prob))  # [C, 64, 17]
  means = (probs * np.arange(LEVELS)).sum(-1)  # [C, 64]
  flat = samples.reshape(-1, 64)
  labels = np.repeat(np.arange(NUM_CLASSES), per_class).astype(np.int32)
  lr, _ = lr_lib.fit_logreg(
    (xtr / 16).astype(np.float32),
    ytr,
    num_classes=NUM_CLASSES,
    l2=1.0 / len(ytr),
    num_steps=LR_STEPS,
  )
  lr_acc = float(
    np.mean(np.asarray(lr_lib.logreg_predict(lr, (flat / 16).astype(np.float32))) == labels)
  )
  nb_acc = float(np.mean(np.asarray(nb_lib.predict(params, flat)) == labels))
  ll_samples = float(np.mean(np.asarray(nb_lib.log_marginal(params, flat))))
  ll_test = float(np.mean(np.asarray(nb_lib.log_marginal(params, xte))))
  return (
    samples,
    means,
    {
      'per_class': per_class,
      'logreg_accuracy_on_samples': lr_acc,
      'nb_accuracy_on_samples': nb_acc,
      'logreg_test_accuracy': float(
        np.mean(np.asarray(lr_lib.logreg_predict(lr, (xte / 16).astype(np.float32))) == yte)
      ),
      'mean_log_p_samples_nats': ll_samples,
      'mean_log_p_test_nats': ll_test,
      'test_bpd': -ll_test / (64 * np.log(2)),
    },
  )


# ---------------------------------------------------------------------------
# Plots.


def plot_all(results, samples, means, out_dir):
  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  lc = results['learning_curves']
  m = [r['m'] for r in lc['rows']]
  fig, ax = plt.subplots(1, 2, figsize=(11, 4))
  curves = (
    ('logreg', 'logistic regression', 'k-o'),
    ('nb_categorical', 'NB categorical (17 levels)', 'C0-s'),
    ('nb_gaussian', 'NB Gaussian', 'C1-^'),
    ('nb_bernoulli', 'NB Bernoulli', 'C2-v'),
    ('nb_multinomial', 'NB multinomial', 'C3-d'),
  )
  for key, label, style in curves:
    err = np.array([r[key]['error'] for r in lc['rows']])
    std = np.array([r[key]['error_std'] for r in lc['rows']])
    (line,) = ax[0].plot(m, err, style, label=label, ms=4)
    ax[0].fill_between(m, err - std, err + std, color=line.get_color(), alpha=0.12)
    ax[1].plot(m, [r[key]['log_loss'] for r in lc['rows']], style, label=label, ms=4)
  for a in ax:
    a.set_xscale('log')
    a.set_xlabel('training examples m')
  ax[0].set_ylabel('test error (mean +- std over subsets)')
  ax[1].set_ylabel('test log-loss (nats)')
  ax[1].set_ylim(0, 6)
  ax[1].set_title('log-loss (off scale: Gaussian NB 1e5-1e9 nats, multinomial NB 5-24)', fontsize=9)
  ax[0].legend(fontsize=8)
  wins = [f'{v}: {c["first_m_lr_better_onwards"]}' for v, c in lc['crossover'].items()]
  ax[0].set_title('digits (Ng & Jordan 2002); LR better from m = ' + ', '.join(wins), fontsize=8)
  fig.tight_layout()
  fig.savefig(os.path.join(out_dir, 'learning_curves.png'), dpi=120)
  plt.close(fig)

  dc = results['double_counting']
  fig, ax = plt.subplots(1, 3, figsize=(14, 4))
  for name, ls in (('block', '-'), ('all', '--')):
    rows = dc[name]['rows']
    k = [r['k'] for r in rows]
    what = 'central 4x4 block' if name == 'block' else 'whole image'
    for model, color, label in (('nb', 'C0', 'NB'), ('logreg', 'k', 'LR')):
      ax[0].plot(
        k,
        [r[model]['log_loss'] for r in rows],
        ls,
        color=color,
        marker='o',
        ms=3,
        label=f'{label}, {what}',
      )
      ax[1].plot(k, [r[model]['ece'] for r in rows], ls, color=color, marker='o', ms=3)
      ax[2].plot(k, [1 - r[model]['accuracy'] for r in rows], ls, color=color, marker='o', ms=3)
  for a, t in zip(ax, ('test log-loss (nats)', 'expected calibration error', 'test error')):
    a.set_xlabel('copies k of the duplicated pixels')
    a.set_ylabel(t)
  ax[0].legend(fontsize=8)
  ax[0].set_title('double counting: NB overcounts, LR does not')
  fig.tight_layout()
  fig.savefig(os.path.join(out_dir, 'double_counting.png'), dpi=120)
  plt.close(fig)

  from gm_jax.evaluate import images

  num = samples.shape[1]
  # Column 0: E[x | y]; a blank column; then samples. One row per class.
  tiles = np.concatenate(
    [np.rint(means)[:, None], np.zeros_like(means)[:, None], samples], axis=1
  ).reshape(-1, 8, 8, 1)
  grid = images.make_grid(tiles, num_levels=LEVELS, nrow=num + 2, scale=8)
  fig, ax = plt.subplots(figsize=(7, 6.6))
  ax.imshow(grid, interpolation='nearest')
  ax.set_axis_off()
  ax.set_title(
    'categorical naive Bayes on digits: E[x|y] | samples x ~ p(x|y)\n'
    '(pixels independent given the class, hence the salt-and-pepper)',
    fontsize=9,
  )
  fig.tight_layout()
  fig.savefig(os.path.join(out_dir, 'nb_samples.png'), dpi=120)
  plt.close(fig)


def summarise(results) -> dict:
  """The numbers the issue asks for, in one place."""
  lc, dc, tx = results['learning_curves'], results['double_counting'], results['text']
  first, last = lc['rows'][0], lc['rows'][-1]
  out = {
    'crossover': lc['crossover'],
    'error_at_m10': {k: v['error'] for k, v in first.items() if isinstance(v, dict)},
    'error_at_m1437': {k: v['error'] for k, v in last.items() if isinstance(v, dict)},
  }
  for name in ('block', 'all'):
    rows = dc[name]['rows']
    out[f'double_counting_{name}'] = {
      f'{model}_{metric}_k{row["k"]}': row[model][metric]
      for row in (rows[0], rows[-1])
      for model in ('nb', 'logreg')
      for metric in ('ece', 'log_loss', 'accuracy')
    }
  out['text'] = {
    k: {m: tx[k][m] for m in ('accuracy', 'log_loss', 'ece')}
    for k in ('nb_multinomial', 'nb_bernoulli', 'logreg')
  }
  return out


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--out', default='benchmarks/results/nb_vs_logreg')
  parser.add_argument('--repeats', type=int, default=10)
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args(argv)
  if args.repeats < 1:
    raise ValueError(f'--repeats must be >= 1, got {args.repeats}')
  os.makedirs(args.out, exist_ok=True)
  t0 = time.perf_counter()
  xtr, ytr, xte, yte = load_digits_split()
  results = {
    'device': jax.devices()[0].device_kind,
    'jax': jax.__version__,
    'data': 'sklearn load_digits: train first 1437, test last 360',
  }
  timings = {}
  for name, fn in (
    (
      'learning_curves',
      lambda: learning_curves(xtr, ytr, xte, yte, repeats=args.repeats, seed=args.seed),
    ),
    ('double_counting', lambda: double_counting(xtr, ytr, xte, yte)),
    ('text', lambda: text_task(seed=args.seed)),
  ):
    print(name, file=sys.stderr, flush=True)
    t = time.perf_counter()
    results[name] = fn()
    timings[name] = time.perf_counter() - t
  samples, means, results['nb_samples'] = nb_samples(xtr, ytr, xte, yte, seed=args.seed)
  results['section_seconds'] = timings
  results['summary'] = summarise(results)
  results['seconds'] = time.perf_counter() - t0
  plot_all(results, samples, means, args.out)
  text = json.dumps(results, indent=2)
  with open(os.path.join(args.out, 'results.json'), 'w') as f:
    f.write(text + '\n')
  print(text)


if __name__ == '__main__':
  main()
