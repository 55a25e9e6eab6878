"""Linear-probe accuracy: how linearly decodable the labels are from a representation."""

from __future__ import annotations

import numpy as np


def linear_probe_accuracy(
  train_features, train_labels, test_features, test_labels, *, max_iter: int = 2000
) -> float:
  """Test accuracy of a multinomial logistic regression fit on `train_features`.

  Args:
    train_features: `[N, D]` float features (e.g. latent means), `train_labels` `[N]`.
    test_features: `[M, D]`, `test_labels` `[M]`.

  Features are standardised with the training mean and std (scikit-learn's
  `StandardScaler`), so the probe does not depend on the latent's scale.
  """
  from sklearn.linear_model import LogisticRegression
  from sklearn.pipeline import make_pipeline
  from sklearn.preprocessing import StandardScaler

  train_x = np.asarray(train_features, np.float64).reshape(len(train_features), -1)
  test_x = np.asarray(test_features, np.float64).reshape(len(test_features), -1)
  if train_x.shape[1] != test_x.shape[1]:
    raise ValueError(f'train features have {train_x.shape[1]} dims, test {test_x.shape[1]}')
  if not (np.all(np.isfinite(train_x)) and np.all(np.isfinite(test_x))):
    raise ValueError('linear probe: features contain NaN or inf')
  probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter))
  probe.fit(train_x, np.asarray(train_labels))
  return float(probe.score(test_x, np.asarray(test_labels)))


def probe_splits(encode, splits, *, batch_size: int = 256) -> dict:
  """`latent_dims` and `linear_probe_accuracy` of a representation on labelled splits.

  Args:
    encode: `images [B, H, W, C] -> features [B, ...]` (e.g. a jitted encoder with its
      parameters bound); features are flattened per example.
    splits: `gm_jax.data.Splits` whose `train` and `test` have 'image' and 'label'.
  """
  from gm_jax import data as gm_data

  def features(arrays):
    return np.concatenate(
      [
        np.asarray(encode(b['image'])).reshape(len(b['image']), -1)
        for b in gm_data.iterate_batches(arrays, batch_size)
      ]
    )

  train_z, test_z = features(splits.train), features(splits.test)
  return {
    'latent_dims': int(train_z.shape[1]),
    'linear_probe_accuracy': linear_probe_accuracy(
      train_z, splits.train['label'], test_z, splits.test['label']
    ),
  }
