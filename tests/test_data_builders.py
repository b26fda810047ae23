# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""Tests for the TFDS builders and loaders (offline, TensorFlow-free).

Most tests write tiny fake npz files into a temporary ``manual_dir`` and
prepare them into a temporary ``data_dir``; one test reads the vendored
PneumoniaMNIST file and checks the official counts.
"""

import hashlib
import os
import threading

import filelock
import numpy as np
import pytest

from fedhelp_jax.data import builders
from fedhelp_jax.data import load


def _md5(path):
  with open(path, 'rb') as f:
    return hashlib.md5(f.read()).hexdigest()


def _fake_medmnist(directory, subset='breast', channels=1, num_classes=2,
                   sizes=(20, 5, 5), seed=0, **overrides):
  """Writes ``<subset>mnist.npz`` in the official layout; returns arrays."""
  rng = np.random.default_rng(seed)
  arrays = {}
  for split, n in zip(('train', 'val', 'test'), sizes):
    shape = (n, 28, 28) if channels == 1 else (n, 28, 28, channels)
    arrays[f'{split}_images'] = rng.integers(0, 256, shape, dtype=np.uint8)
    arrays[f'{split}_labels'] = rng.integers(
        0, num_classes, (n, 1)).astype(np.uint8)
  arrays.update(overrides)
  path = os.path.join(directory, f'{subset}mnist.npz')
  np.savez(path, **arrays)
  return arrays, path


@pytest.fixture
def dirs(tmp_path):
  manual = tmp_path / 'manual'
  manual.mkdir()
  return str(manual), str(tmp_path / 'tfds')


def test_fake_grey_subset_round_trips_through_array_record(dirs):
  manual, data_dir = dirs
  arrays, path = _fake_medmnist(manual)
  out = load.load_medmnist('breast', data_dir=data_dir, manual_dir=manual,
                           expected_md5=_md5(path))
  assert set(out) == {'train', 'val', 'test'}
  for split, n in (('train', 20), ('val', 5), ('test', 5)):
    d = out[split]
    assert d['image'].shape == (n, 28, 28, 1) and d['image'].dtype == np.uint8
    assert d['label'].dtype == np.int32
    np.testing.assert_array_equal(d['image'][..., 0],
                                  arrays[f'{split}_images'])
    np.testing.assert_array_equal(d['label'], arrays[f'{split}_labels'][:, 0])
    np.testing.assert_array_equal(d['id'], np.arange(n))
  # The prepared cache is array_record, under the builder's own name.
  files = os.listdir(os.path.join(data_dir, 'fedhelp_medmnist', 'breast',
                                  '1.0.0'))
  assert any('array_record' in f for f in files)


def test_first_load_waits_for_another_process_preparing_the_cache(dirs):
  """Parallel first loads (test workers, two runs) prepare the cache once:
  a load waits while the cache's lock is held, then prepares."""
  manual, data_dir = dirs
  _, path = _fake_medmnist(manual)
  os.makedirs(data_dir)
  done = threading.Event()
  def load_it():
    load.load_medmnist('breast', data_dir=data_dir, manual_dir=manual,
                       expected_md5=_md5(path))
    done.set()
  # Another process holds the lock (filelock is per open file, so a second
  # FileLock object in this process blocks like one in another process).
  with filelock.FileLock(os.path.join(data_dir, '.prepare.lock')):
    worker = threading.Thread(target=load_it)
    worker.start()
    assert not done.wait(1.0)
    assert not os.path.exists(os.path.join(data_dir, 'fedhelp_medmnist'))
  worker.join(120)
  assert done.is_set()


def test_fake_rgb_subset_keeps_three_channels(dirs):
  manual, data_dir = dirs
  arrays, path = _fake_medmnist(manual, subset='blood', channels=3,
                                num_classes=8)
  out = load.load_medmnist('blood', data_dir=data_dir, manual_dir=manual,
                           expected_md5=_md5(path))
  assert out['val']['image'].shape == (5, 28, 28, 3)
  np.testing.assert_array_equal(out['val']['image'], arrays['val_images'])


def test_default_verification_rejects_an_unofficial_file(dirs):
  manual, data_dir = dirs
  _fake_medmnist(manual)
  with pytest.raises(ValueError, match='MD5 mismatch') as err:
    load.load_medmnist('breast', data_dir=data_dir, manual_dir=manual)
  assert builders.MEDMNIST_SUBSETS['breast'].md5 in str(err.value)
  with pytest.raises(ValueError, match='MD5 mismatch'):
    load.load_medmnist('breast', data_dir=data_dir, manual_dir=manual,
                       expected_md5='0' * 32)


def test_missing_file_says_what_and_where(dirs):
  manual, data_dir = dirs
  with pytest.raises(FileNotFoundError, match='dermamnist.npz') as err:
    load.load_medmnist('derma', data_dir=data_dir, manual_dir=manual)
  assert manual in str(err.value)
  # Not vendored and no manual_dir: the message says to pass one.
  with pytest.raises(FileNotFoundError, match='manual_dir='):
    load.load_medmnist('derma', data_dir=data_dir)


@pytest.mark.parametrize('override, match', [
    (dict(train_images=np.zeros((20, 32, 32), np.uint8)), 'train_images'),
    (dict(val_labels=np.zeros((4, 1), np.uint8)), 'val_labels'),
    (dict(test_labels=np.full((5, 1), 2, np.uint8)), r'\[0, 1\]'),
])
def test_malformed_arrays_are_rejected(dirs, override, match):
  manual, data_dir = dirs
  _, path = _fake_medmnist(manual, **override)
  with pytest.raises(ValueError, match=match):
    load.load_medmnist('breast', data_dir=data_dir, manual_dir=manual,
                       expected_md5=_md5(path))


def test_missing_keys_are_named(dirs):
  manual, data_dir = dirs
  path = os.path.join(manual, 'breastmnist.npz')
  np.savez(path, train_images=np.zeros((2, 28, 28), np.uint8))
  with pytest.raises(ValueError, match='lacks the keys'):
    load.load_medmnist('breast', data_dir=data_dir, manual_dir=manual,
                       expected_md5=_md5(path))


def test_changed_source_file_regenerates_the_cache(dirs):
  manual, data_dir = dirs
  _, path = _fake_medmnist(manual, seed=0)
  first = load.load_medmnist('breast', data_dir=data_dir, manual_dir=manual,
                             expected_md5=_md5(path))
  arrays, path = _fake_medmnist(manual, seed=1)
  second = load.load_medmnist('breast', data_dir=data_dir, manual_dir=manual,
                              expected_md5=_md5(path))
  assert not np.array_equal(first['train']['image'], second['train']['image'])
  np.testing.assert_array_equal(second['train']['image'][..., 0],
                                arrays['train_images'])
  # A prepared cache does not skip verification of the current file.
  with pytest.raises(ValueError, match='MD5 mismatch'):
    load.load_medmnist('breast', data_dir=data_dir, manual_dir=manual)


def test_unknown_subset():
  with pytest.raises(ValueError, match='unknown MedMNIST subset'):
    load.load_medmnist('chest')


def test_brain_builder_round_trips_a_fake_file(dirs):
  manual, data_dir = dirs
  rng = np.random.default_rng(0)
  src = {'images': rng.integers(0, 256, (6, 64, 64), dtype=np.uint8),
         'masks': rng.integers(0, 3, (6, 64, 64)).astype(np.uint8),
         'axis': np.array([0, 0, 1, 1, 2, 2], np.uint8),
         'slice_index': np.array([3, 4, 10, 11, 7, 9], np.int16)}
  path = os.path.join(manual, builders.MNI_FILENAME)
  np.savez(path, **src)
  out = load.load_brain_slices(data_dir=data_dir, manual_dir=manual,
                               expected_md5=_md5(path))
  np.testing.assert_array_equal(out['image'][..., 0], src['images'])
  np.testing.assert_array_equal(out['mask'], src['masks'])
  np.testing.assert_array_equal(out['axis'], src['axis'])
  np.testing.assert_array_equal(out['slice_index'], src['slice_index'])
  assert out['mask'].dtype == np.int32 and out['image'].shape[-1] == 1

  src['masks'][0, 0, 0] = 3
  np.savez(path, **src)
  with pytest.raises(ValueError, match=r'mask values must be in'):
    load.load_brain_slices(data_dir=data_dir, manual_dir=manual,
                           expected_md5=_md5(path))


def test_vendored_pneumonia_has_the_official_counts(tmp_path):
  assert _md5(os.path.join(builders.ASSETS_DIR, 'pneumoniamnist_28.npz')) == (
      builders.VENDORED_PNEUMONIA_MD5)
  out = load.load_medmnist('pneumonia', data_dir=str(tmp_path))
  assert {s: len(d['label']) for s, d in out.items()} == {
      'train': 4708, 'val': 524, 'test': 624}
  np.testing.assert_array_equal(np.bincount(out['train']['label']),
                                [1214, 3494])
  np.testing.assert_array_equal(np.bincount(out['test']['label']), [234, 390])
  assert out['train']['image'].shape == (4708, 28, 28, 1)


def test_vendored_brain_slices_load_with_the_documented_counts(tmp_path):
  out = load.load_brain_slices(data_dir=str(tmp_path))
  np.testing.assert_array_equal(np.bincount(out['axis']), [135, 167, 133])
  assert out['image'].shape == (435, 64, 64, 1)
  assert set(np.unique(out['mask'])) == {0, 1, 2}


def test_breast_cancer_tabular_is_maxabs_scaled():
  from sklearn import datasets as sk_datasets
  raw = sk_datasets.load_breast_cancer()
  out = load.load_breast_cancer_tabular()
  assert out['x'].shape == (569, 30) and out['x'].dtype == np.float32
  np.testing.assert_allclose(out['x'], raw.data / np.abs(raw.data).max(0),
                             rtol=1e-6)
  np.testing.assert_allclose(np.abs(out['x']).max(0), 1.0)
  np.testing.assert_array_equal(out['y'], raw.target)
  assert out['y'].dtype == np.int32


def test_stratified_split_keeps_class_mix_and_covers_everything():
  y = np.repeat([0, 1], [60, 40])
  a, b, c = load.stratified_split(y, [0.2, 0.1, 0.7], seed=0)
  np.testing.assert_array_equal(np.sort(np.concatenate([a, b, c])),
                                np.arange(100))
  np.testing.assert_array_equal(np.bincount(y[a]), [12, 8])
  np.testing.assert_array_equal(np.bincount(y[b]), [6, 4])


@pytest.mark.parametrize('kwargs, match', [
    (dict(images=np.full((2, 3), np.nan, np.float32)), 'NaN or inf'),
    (dict(images=np.zeros((2, 3)), labels=np.array([0, 5]), num_classes=2),
     'outside the expected set'),
    (dict(images=np.zeros((2, 3)), labels=np.array([0, 1, 1])),
     'labels must have shape'),
    (dict(images=np.zeros((2, 4, 4, 1)), masks=np.full((2, 4, 4), 3),
          mask_values=range(3)), 'masks contain values'),
    (dict(images=np.zeros((2, 4, 4, 1)), masks=np.zeros((2, 5, 5), int)),
     'disagree on H, W'),
    (dict(images=np.zeros((2, 4, 4, 1)), image_shape=(28, 28, 1)),
     'images must be'),
    (dict(images=np.zeros((0, 3))), 'N >= 1'),
])
def test_validate_arrays_names_the_problem(kwargs, match):
  with pytest.raises(ValueError, match=match):
    load.validate_arrays(**kwargs)


def test_validate_arrays_accepts_good_data():
  load.validate_arrays(np.zeros((2, 4, 4, 1), np.uint8), np.array([0, 1]),
                       masks=np.zeros((2, 4, 4), np.int32), num_classes=2,
                       mask_values=range(3), image_shape=(4, 4, 1))
