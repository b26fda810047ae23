# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""TFDS builders for the project's medical image datasets, without TensorFlow.

Both builders are ``tfds.core.GeneratorBasedBuilder`` subclasses meant to be
prepared with ``file_format='array_record'`` and read back with
``builder.as_data_source()``. That path never imports TensorFlow:

  * features are ``tfds.features.Tensor``/``Scalar``/``ClassLabel`` (encoding
    ``tfds.features.Image`` needs TF, so images are stored as raw uint8
    tensors);
  * ``as_dataset()`` (a ``tf.data`` pipeline) is never used;
  * the loaders pass ``try_download_gcs=False`` so preparation never looks for
    a hosted copy (the machines are offline).

The classes are defined with ``skip_registration=True``, so importing this
module never clashes with TFDS's own catalogue (TFDS ships no MedMNIST builder
today, but a future one would be named ``med_mnist``); they are addressed by
class, never through ``tfds.builder(name)``.

Source files are read from the TFDS ``manual_dir``
(``tfds.download.DownloadConfig(manual_dir=...)``). When no ``manual_dir`` is
given, the files vendored in ``fedhelp_jax/data/assets`` are used where one
exists (PneumoniaMNIST, OrganAMNIST, BloodMNIST and the MNI152 slices). Every source file's MD5 is
verified before any example is written; ``expected_md5`` overrides the
accepted hashes for files the user made (tests, custom subsets).
"""

import dataclasses
import hashlib
import os
from typing import Any, Iterator, Mapping, Optional, Sequence

import numpy as np
import tensorflow_datasets as tfds

ASSETS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                          'assets')

# The vendored PneumoniaMNIST file holds exactly the official images, labels
# and split sizes, but it was reassembled from two public copies and its train
# examples are in a different order, so its bytes (and MD5) differ from the
# official file's. See assets/ATTRIBUTION.md.
VENDORED_PNEUMONIA_MD5 = '05c5b701061cc0b6e5199c92ea6a3ec6'
# The MNI152 slices were made for this project; there is no upstream npz.
VENDORED_MNI_MD5 = '3f478926d6f5f08a1eb8d46a1a9a38cd'

MEDMNIST_SPLITS = ('train', 'val', 'test')


@dataclasses.dataclass(frozen=True)
class MedMNISTSubset:
  """Static facts about one 2-D MedMNIST subset at 28 x 28 pixels.

  Attributes:
    name: subset name without the ``mnist`` suffix, e.g. ``'pneumonia'``.
    num_classes: number of classes (the label is one integer per image).
    channels: 1 for grey-scale subsets, 3 for RGB subsets.
    md5: MD5 of the official ``<name>mnist.npz`` (medmnist ``info.py``, v3).
    license: licence of the subset.
    vendored: file name in ``assets/`` used when no manual_dir is given, or
      None when the subset is not vendored.
    vendored_md5: MD5 of that vendored file (accepted besides ``md5``).
  """
  name: str
  num_classes: int
  channels: int
  md5: str
  license: str = 'CC BY 4.0'
  vendored: Optional[str] = None
  vendored_md5: Optional[str] = None

  @property
  def filename(self) -> str:
    return f'{self.name}mnist.npz'

  @property
  def accepted_md5s(self) -> tuple[str, ...]:
    extra = (self.vendored_md5,) if self.vendored_md5 else ()
    return (self.md5,) + extra


# Every 2-D MedMNIST subset whose label is a single class index. ChestMNIST is
# left out on purpose: it is multi-label (14 binary labels per image), which
# the scalar ``label`` feature and the classification task do not express.
MEDMNIST_SUBSETS: Mapping[str, MedMNISTSubset] = {
    s.name: s for s in (
        MedMNISTSubset('pneumonia', 2, 1, '28209eda62fecd6e6a2d98b1501bb15f',
                       vendored='pneumoniamnist_28.npz',
                       vendored_md5=VENDORED_PNEUMONIA_MD5),
        MedMNISTSubset('breast', 2, 1, '750601b1f35ba3300ea97c75c52ff8f6'),
        MedMNISTSubset('blood', 8, 3, '7053d0359d879ad8a5505303e11de1dc',
                       vendored='bloodmnist_28.npz'),
        MedMNISTSubset('derma', 7, 3, '0744692d530f8e62ec473284d019b0c7',
                       license='CC BY-NC 4.0'),
        MedMNISTSubset('organa', 11, 1, '68e3f8846a6bd62f0c9bf841c0d9eacc',
                       vendored='organamnist_28.npz'),
        MedMNISTSubset('organc', 11, 1, 'b9ceb9546e10131b32923c5bbeaea2b1'),
        MedMNISTSubset('organs', 11, 1, '9ab87b696fb54e2a387ebe992d6ed5f1'),
        MedMNISTSubset('path', 9, 3, 'a8b06965200029087d5bd730944a56c1'),
        MedMNISTSubset('oct', 4, 1, 'c68d92d5b585d8d81f7112f81e2d0842'),
        MedMNISTSubset('retina', 5, 3, 'bd4c0672f1bba3e3a89f0e4e876791e4'),
        MedMNISTSubset('tissue', 8, 1, 'ebe78ee8b05294063de985d821c1c34b'),
    )
}

MNI_FILENAME = 'mni152_tissue_slices_64.npz'
MNI_SIZE = 64
MNI_NUM_CLASSES = 3  # 0 background/CSF, 1 grey matter, 2 white matter.
_MNI_KEYS = ('images', 'masks', 'axis', 'slice_index')


# ---------------------------------------------------------------------------
# Source files: where they are and whether they are the expected bytes.
# ---------------------------------------------------------------------------


def file_md5(path: str) -> str:
  """Hex MD5 digest of the file at ``path`` (read in 1 MiB chunks)."""
  digest = hashlib.md5()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
      digest.update(chunk)
  return digest.hexdigest()


def resolve_source(filename: str, manual_dir: Optional[str],
                   vendored: Optional[str], hint: str) -> str:
  """Path of a dataset's source file.

  Args:
    filename: the file's name inside ``manual_dir``.
    manual_dir: directory given by the user, or None.
    vendored: file name in ``assets/`` used when ``manual_dir`` is None, or
      None when nothing is vendored.
    hint: one sentence saying where to obtain the file.

  Returns:
    The path to read.

  Raises:
    FileNotFoundError: the file is not where it should be.
  """
  if manual_dir is not None:
    path = os.path.join(os.fspath(manual_dir), filename)
    if not os.path.isfile(path):
      raise FileNotFoundError(
          f'Expected {filename!r} in manual_dir {os.fspath(manual_dir)!r}, '
          f'but {path!r} does not exist. {hint} Put it there under that exact '
          'name, or pass manual_dir=None to use the vendored copy if there is '
          'one.')
    return path
  if vendored is None:
    raise FileNotFoundError(
        f'{filename!r} is not vendored with fedhelp_jax. {hint} Then pass '
        'manual_dir=<the directory that contains it>.')
  path = os.path.join(ASSETS_DIR, vendored)
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f'The vendored file {path!r} is missing; reinstall fedhelp_jax or '
        f'pass manual_dir=<a directory containing {filename!r}>.')
  return path


def verify_md5(path: str, accepted: Sequence[str]) -> str:
  """Checks that the file at ``path`` has one of the ``accepted`` MD5s.

  Args:
    path: file to hash.
    accepted: accepted lower-case hex digests.

  Returns:
    The file's MD5.

  Raises:
    ValueError: the digest is not accepted (says which were expected).
  """
  md5 = file_md5(path)
  if md5 not in accepted:
    raise ValueError(
        f'MD5 mismatch for {path!r}: got {md5}, expected '
        f'{" or ".join(accepted)}. The file is corrupt, truncated or a '
        'different release; download the official file again, or pass '
        'expected_md5=<its MD5> (--config.dataset.expected_md5=...) if you '
        'made it yourself on purpose.')
  return md5


def _load_npz(path: str, keys: Sequence[str]) -> dict[str, np.ndarray]:
  with np.load(path, allow_pickle=False) as npz:
    missing = [k for k in keys if k not in npz.files]
    if missing:
      raise ValueError(
          f'{path!r} lacks the keys {missing}; expected the keys '
          f'{list(keys)} (found {sorted(npz.files)}).')
    return {k: np.asarray(npz[k]) for k in keys}


def check_medmnist_arrays(arrays: Mapping[str, np.ndarray],
                          subset: MedMNISTSubset, path: str
                          ) -> dict[str, np.ndarray]:
  """Validates and normalizes the arrays of one MedMNIST npz.

  Args:
    arrays: the npz content with keys ``{split}_images`` (``[N, 28, 28]`` for
      grey or ``[N, 28, 28, 3]`` for RGB, uint8) and ``{split}_labels``
      (``[N]`` or ``[N, 1]``, integers).
    subset: the subset the file should hold.
    path: the file's path, for messages.

  Returns:
    ``{split}_images`` as uint8 ``[N, 28, 28, C]`` and ``{split}_labels`` as
    int64 ``[N]``.

  Raises:
    ValueError: naming the array and the problem.
  """
  out = {}
  want = (28, 28) if subset.channels == 1 else (28, 28, 3)
  for split in MEDMNIST_SPLITS:
    images = arrays[f'{split}_images']
    labels = arrays[f'{split}_labels']
    if images.dtype != np.uint8 or images.shape[1:] != want:
      raise ValueError(
          f'{path!r}: {split}_images must be uint8 {["N", *want]} for '
          f'{subset.name}mnist at 28 px; got {images.dtype} '
          f'{list(images.shape)}.')
    if labels.ndim == 2 and labels.shape[1] == 1:
      labels = labels[:, 0]
    if labels.shape != images.shape[:1]:
      raise ValueError(
          f'{path!r}: {split}_labels must be [N] or [N, 1] with N = '
          f'{images.shape[0]} ({split}_images); got {list(labels.shape)}.')
    if not np.issubdtype(labels.dtype, np.integer):
      raise ValueError(f'{path!r}: {split}_labels must be integers; got '
                       f'{labels.dtype}.')
    if labels.size and (labels.min() < 0 or
                        labels.max() >= subset.num_classes):
      raise ValueError(
          f'{path!r}: {split}_labels must lie in [0, {subset.num_classes - 1}]'
          f' for {subset.name}mnist; found [{labels.min()}, {labels.max()}].')
    if subset.channels == 1:
      images = images[..., None]
    out[f'{split}_images'] = images
    out[f'{split}_labels'] = labels.astype(np.int64)
  return out


def check_mni_arrays(arrays: Mapping[str, np.ndarray], path: str
                     ) -> dict[str, np.ndarray]:
  """Validates the MNI152 slice arrays (see ``MNIBrainSlices``).

  Returns:
    ``images`` uint8 ``[N, 64, 64, 1]``, ``masks`` uint8 ``[N, 64, 64]``,
    ``axis`` int64 ``[N]`` and ``slice_index`` int64 ``[N]``.

  Raises:
    ValueError: naming the array and the problem.
  """
  images, masks = arrays['images'], arrays['masks']
  shape = (MNI_SIZE, MNI_SIZE)
  if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != shape:
    raise ValueError(f'{path!r}: images must be uint8 [N, 64, 64]; got '
                     f'{images.dtype} {list(images.shape)}.')
  if masks.shape != images.shape or not np.issubdtype(masks.dtype,
                                                       np.integer):
    raise ValueError(f'{path!r}: masks must be integer {list(images.shape)} '
                     f'like images; got {masks.dtype} {list(masks.shape)}.')
  bad = np.setdiff1d(np.unique(masks), np.arange(MNI_NUM_CLASSES))
  if bad.size:
    raise ValueError(f'{path!r}: mask values must be in {{0, 1, 2}}; found '
                     f'{bad.tolist()}.')
  n = images.shape[0]
  for key in ('axis', 'slice_index'):
    if arrays[key].shape != (n,):
      raise ValueError(f'{path!r}: {key} must be [{n}]; got '
                       f'{list(arrays[key].shape)}.')
  if np.any((arrays['axis'] < 0) | (arrays['axis'] > 2)):
    raise ValueError(f'{path!r}: axis values must be 0, 1 or 2.')
  if np.any(arrays['slice_index'] < 0):
    raise ValueError(f'{path!r}: slice_index values must be >= 0.')
  return {'images': images[..., None], 'masks': masks.astype(np.uint8),
          'axis': arrays['axis'].astype(np.int64),
          'slice_index': arrays['slice_index'].astype(np.int64)}


# ---------------------------------------------------------------------------
# Builders.
# ---------------------------------------------------------------------------


class _ManualSourceBuilder(tfds.core.GeneratorBasedBuilder,
                           skip_registration=True):
  """Shared plumbing: an explicit manual_dir, an MD5 override, provenance.

  ``download_and_prepare`` is overridden only to remember whether the caller
  passed a ``manual_dir``: TFDS always hands ``_split_generators`` a manual
  directory (defaulting to ``<download_dir>/manual``), so without this the
  builder could not tell "use the vendored copy" from "look in my directory".
  """

  # TFDS looks for a ``checksums.tsv`` of download URLs next to the class's
  # source file; finding that file imports ``importlib_resources`` (an
  # optional dependency that is not always installed). These builders download
  # nothing, so there is no checksums file to find.
  code_path = None

  def __init__(self, *, expected_md5: Optional[str] = None, **kwargs: Any):
    """Builds the builder.

    Args:
      expected_md5: if set, the only MD5 the source file may have (for files
        made by the user); None verifies against the official/vendored MD5s.
      **kwargs: passed to ``tfds.core.GeneratorBasedBuilder`` (``data_dir``,
        ``config``, ``file_format``...).
    """
    self._expected_md5 = expected_md5
    self._manual_dir: Optional[str] = None
    super().__init__(**kwargs)

  def download_and_prepare(self, *, download_config=None, **kwargs) -> None:
    self._manual_dir = (download_config.manual_dir
                        if download_config is not None else None)
    super().download_and_prepare(download_config=download_config, **kwargs)

  def _accepted_md5s(self) -> tuple[str, ...]:
    raise NotImplementedError

  def source_path(self, manual_dir: Optional[str]) -> str:
    """Path of the source file read for ``manual_dir`` (see resolve_source)."""
    raise NotImplementedError

  def accepted_md5s(self) -> tuple[str, ...]:
    """MD5s the source file may have (``expected_md5`` if it was given)."""
    if self._expected_md5 is not None:
      return (self._expected_md5.lower(),)
    return self._accepted_md5s()

  def _verified_source(self) -> str:
    path = self.source_path(self._manual_dir)
    md5 = verify_md5(path, self.accepted_md5s())
    # Recorded in dataset_info so a loader can tell a stale cache (prepared
    # from another file) from a current one.
    self.info.metadata['source_md5'] = md5
    return path


class MedMNIST(_ManualSourceBuilder, skip_registration=True):
  """2-D MedMNIST subsets at 28 x 28 (one ``BuilderConfig`` per subset).

  Features: ``image`` uint8 ``[28, 28, C]`` (C = 1 grey, 3 RGB), ``label``
  int64 scalar (``ClassLabel``), ``id`` int64 (index within its split, in
  the order of the source file). Splits: ``train``, ``val``, ``test``.
  """

  name = 'fedhelp_medmnist'
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Official MedMNIST npz files at 28 px.'}
  BUILDER_CONFIGS = [
      tfds.core.BuilderConfig(
          name=s.name, description=f'{s.name}mnist: {s.num_classes} classes, '
          f'{s.channels} channel(s), {s.license}.')
      for s in MEDMNIST_SUBSETS.values()
  ]
  DEFAULT_CONFIG_NAME = 'pneumonia'
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      'Download the official MedMNIST file <subset>mnist.npz (28 px) from the '
      'MedMNIST Zenodo record and place it, unrenamed, in manual_dir.')

  @property
  def subset(self) -> MedMNISTSubset:
    return MEDMNIST_SUBSETS[self.builder_config.name]

  def _info(self) -> tfds.core.DatasetInfo:
    s = self.subset
    return tfds.core.DatasetInfo(
        builder=self,
        description=(f'MedMNIST v2 {s.name}mnist at 28 x 28, official '
                     'train/val/test splits.'),
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Tensor(shape=(28, 28, s.channels),
                                          dtype=np.uint8),
            'label': tfds.features.ClassLabel(num_classes=s.num_classes),
            'id': tfds.features.Scalar(dtype=np.int64),
        }),
        supervised_keys=('image', 'label'),
        disable_shuffling=True,  # Keep the file's order; ids match it.
        homepage='https://medmnist.com/',
        citation=('Jiancheng Yang et al. MedMNIST v2 - A large-scale '
                  'lightweight benchmark for 2D and 3D biomedical image '
                  'classification. Scientific Data, 2023.'),
        license=s.license,
        metadata=tfds.core.MetadataDict(),
    )

  def _accepted_md5s(self) -> tuple[str, ...]:
    return self.subset.accepted_md5s

  def source_path(self, manual_dir: Optional[str]) -> str:
    s = self.subset
    return resolve_source(
        s.filename, manual_dir, s.vendored,
        f'Download the official {s.filename} (28 px) from the MedMNIST '
        'Zenodo record.')

  def _split_generators(self, dl_manager) -> dict[str, Iterator[Any]]:
    del dl_manager  # The source is resolved from the remembered manual_dir.
    path = self._verified_source()
    keys = [f'{sp}_{k}' for sp in MEDMNIST_SPLITS for k in ('images',
                                                             'labels')]
    arrays = check_medmnist_arrays(_load_npz(path, keys), self.subset, path)
    return {sp: self._generate_examples(arrays[f'{sp}_images'],
                                        arrays[f'{sp}_labels'])
            for sp in MEDMNIST_SPLITS}

  def _generate_examples(self, images: np.ndarray, labels: np.ndarray
                         ) -> Iterator[tuple[int, dict[str, Any]]]:
    for i in range(images.shape[0]):
      yield i, {'image': images[i], 'label': int(labels[i]), 'id': i}


class MNIBrainSlices(_ManualSourceBuilder, skip_registration=True):
  """2-D T1 slices of the MNI ICBM152 2009a template with tissue masks.

  ONE template brain (an average of 152 subjects): silos built from it are a
  simulation of multi-site data. Features: ``image`` uint8 ``[64, 64, 1]``,
  ``mask`` uint8 ``[64, 64]`` (0 background/CSF, 1 grey matter, 2 white
  matter), ``axis`` int64 (orientation 0/1/2), ``slice_index`` int64
  (position along that axis), ``id`` int64 (index in the file). One split,
  ``train``.
  """

  name = 'fedhelp_mni_brain_slices'
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'MNI152 2009a sym T1 slices at 64 px.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      f'Place {MNI_FILENAME} (keys images, masks, axis, slice_index) in '
      'manual_dir, or leave manual_dir unset to use the vendored copy.')

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=('Slices of the MNI ICBM152 2009a nonlinear symmetric T1 '
                     'template with grey/white matter masks. One template '
                     'brain: multi-site silos from it are simulated.'),
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Tensor(shape=(MNI_SIZE, MNI_SIZE, 1),
                                          dtype=np.uint8),
            'mask': tfds.features.Tensor(shape=(MNI_SIZE, MNI_SIZE),
                                         dtype=np.uint8),
            'axis': tfds.features.Scalar(dtype=np.int64),
            'slice_index': tfds.features.Scalar(dtype=np.int64),
            'id': tfds.features.Scalar(dtype=np.int64),
        }),
        supervised_keys=('image', 'mask'),
        disable_shuffling=True,
        homepage='https://nist.mni.mcgill.ca/icbm-152-nonlinear-atlases-2009/',
        citation=('V. Fonov et al. Unbiased average age-appropriate atlases '
                  'for pediatric studies. NeuroImage, 2011.'),
        license='Copyright (C) 1993-2009 Louis Collins, McConnell Brain '
        'Imaging Centre, Montreal Neurological Institute, McGill University; '
        'use and redistribution allowed with this notice.',
        metadata=tfds.core.MetadataDict(),
    )

  def _accepted_md5s(self) -> tuple[str, ...]:
    return (VENDORED_MNI_MD5,)

  def source_path(self, manual_dir: Optional[str]) -> str:
    return resolve_source(
        MNI_FILENAME, manual_dir, MNI_FILENAME,
        f'It ships with fedhelp_jax in fedhelp_jax/data/assets/{MNI_FILENAME}.')

  def _split_generators(self, dl_manager) -> dict[str, Iterator[Any]]:
    del dl_manager
    path = self._verified_source()
    arrays = check_mni_arrays(_load_npz(path, _MNI_KEYS), path)
    return {'train': self._generate_examples(arrays)}

  def _generate_examples(self, arrays: Mapping[str, np.ndarray]
                         ) -> Iterator[tuple[int, dict[str, Any]]]:
    for i in range(arrays['images'].shape[0]):
      yield i, {'image': arrays['images'][i], 'mask': arrays['masks'][i],
                'axis': int(arrays['axis'][i]),
                'slice_index': int(arrays['slice_index'][i]), 'id': i}
