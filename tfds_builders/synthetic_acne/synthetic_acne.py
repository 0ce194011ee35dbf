"""TFDS builder of the embedded synthetic acne data set: no download, no manual files.

Build without TensorFlow into ArrayRecord files and read back with ``tfds.data_source``::

  builder = SyntheticAcne(config="s256", data_dir=data_dir)
  builder.download_and_prepare(file_format="array_record")
  source = builder.as_data_source(split="train")   # random access; source[i] -> dict

Stored features (one example per generated image, see ``acne_jax.data.synthetic``):

* ``image``: PNG, uint8 ``[H, W, 3]`` RGB (yielded as encoded bytes: encoding arrays would
  need TensorFlow);
* ``image_id`` int64, ``file_name`` and ``patient_id`` text, ``crop_origin`` int32 ``[2]``
  (x, y);
* ``objects`` (a ``Sequence``, lists of length K when read back): ``bbox`` float32 ``[4]``
  x1, y1, x2, y2 in pixels (not ``tfds.features.BBoxFeature``, which is normalised yxyx),
  ``label`` (``ClassLabel`` over ``CLASS_NAMES``), ``area`` float32 (box area),
  ``polygon_size`` int32 (number of floats of the object's polygon);
* ``polygons``: float32 ``[sum_k polygon_size_k]``, the objects' flat ``[x0, y0, x1, y1, ...]``
  polygons concatenated in object order. (A ragged tensor nested in a ``Sequence`` cannot be
  serialised without TensorFlow, hence this layout; ``acne_jax.data.records.decode_record``
  splits it back into one array per object.)

Configurations: ``s256`` (default: 256 x 256, 480 / 48 / 96 images), ``s512`` (512 x 512,
lesions of the same pixel size, four times as many per image) and ``tiny`` (96 x 96, a few
images, for tests). Custom sizes: pass ``config=SyntheticAcneConfig(name=..., ...)``.

``hard`` is the hard set of ``acne_jax.data.synthetic_hard``: whole synthetic faces with
AcneSCU's class frequencies, lesion sizes and density, cut into 384 x 384 windows; its counts
are *faces* (40 / 4 / 16) and it has a fourth split, ``train_plain``: the training faces cut
without masking (partial lesions kept), for the masked-crop ablation.

``faces`` is the count-based grading route's set (``acne_jax.data.synthetic_face_crops``): the 384 x
384 face squares of every view of the embedded graded faces (80 patients), rendered at 640 px,
split by patient as ``python -m acne_jax.grade`` splits them, each record with its visit, view, IGA
grade and whole-face inflammatory count; its counts are *patients*. ``faces_tiny``: 8 patients, for tests.
"""

from __future__ import annotations

import dataclasses
from typing import Tuple, Union

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from acne_jax.data import records, synthetic


@dataclasses.dataclass(eq=False)
class SyntheticAcneConfig(tfds.core.BuilderConfig):
  """Size and counts of a synthetic acne configuration."""

  image_size: Union[int, Tuple[int, int]] = 256  # side, or (height, width)
  num_train: int = synthetic.DEFAULT_SPLIT_SIZES["train"]
  num_validation: int = synthetic.DEFAULT_SPLIT_SIZES["validation"]
  num_test: int = synthetic.DEFAULT_SPLIT_SIZES["test"]
  num_lesions: Tuple[int, int] = (6, 20)
  lesion_scale: float = 1.0
  seed: int = 0
  # "patches": independent skin patches (acne_jax.data.synthetic); "hard": crops of whole
  # faces (acne_jax.data.synthetic_hard), counts in faces, image_size the crop side.
  kind: str = "patches"
  face_size: Tuple[int, int] = (0, 0)  # hard: (height, width) of a face; (0, 0): synthetic_hard.FACE_HW
  density_scale: float = 1.0  # hard: multiplies the lesion count of every face (1: VISIA density)
  num_patients: int = 0  # faces: patients of the graded set (acne_jax.data.synthetic_faces)
  render_size: int = 0  # faces: side of the rendered photos (0: synthetic_face_crops.RENDER_SIZE)


class SyntheticAcne(tfds.core.GeneratorBasedBuilder):
  """Synthetic facial-skin patches with polygon-annotated lesions of 10 acne categories."""

  VERSION = tfds.core.Version("1.1.0")  # new configurations leave the others' data unchanged: no new version
  RELEASE_NOTES = {"1.0.0": "First release.",
                   "1.1.0": "hard: six times the VISIA lesion density (the experiment set's calibration); "
                            "the other configurations' data unchanged."}
  BUILDER_CONFIGS = [
      SyntheticAcneConfig(name="s256", description="256 x 256 patches, 480 / 48 / 96 images."),
      SyntheticAcneConfig(
          name="s512",
          description="512 x 512 patches, 240 / 24 / 48 images, 24-80 lesions each.",
          image_size=512,
          num_train=240,
          num_validation=24,
          num_test=48,
          num_lesions=(24, 80),
      ),
      SyntheticAcneConfig(
          name="tiny",
          description="96 x 96 patches, 6 / 2 / 3 images (tests).",
          image_size=96,
          num_train=6,
          num_validation=2,
          num_test=3,
          num_lesions=(2, 5),
      ),
      SyntheticAcneConfig(
          name="hard",
          description="384 x 384 crops of 40 / 4 / 16 whole faces at AcneSCU's statistics, six times the VISIA lesion "
                      "density; train_plain: unmasked crops.",
          image_size=384,
          num_train=40,
          num_validation=4,
          num_test=16,
          kind="hard",
          density_scale=6.0,
      ),
      SyntheticAcneConfig(
          name="hard_tiny",
          description="The hard set in miniature (128 x 128 crops of 384 x 256 faces, 2 / 1 / 1 faces, 8 times the "
                      "density so that the few crops hold lesions), for smoke runs.",
          image_size=128,
          num_train=2,
          num_validation=1,
          num_test=1,
          kind="hard",
          face_size=(384, 256),
          density_scale=8.0,
      ),
      SyntheticAcneConfig(
          name="faces",
          description="384 x 384 face squares of the 3 views of the 284 visits of 80 graded synthetic patients (rendered "
                      "at 640 px), split by patient as acne_jax.grade splits them; visit, view, IGA grade and whole-face "
                      "inflammatory count per record.",
          image_size=384,
          kind="faces",
          num_patients=80,
      ),
      SyntheticAcneConfig(
          name="faces_tiny",
          description="The faces set in miniature (8 patients, 256 px photos, 160 px squares), for tests.",
          image_size=160,
          kind="faces",
          num_patients=8,
          render_size=256,
      ),
  ]
  DEFAULT_CONFIG_NAME = "s256"

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    """This file. TFDS's default looks the path up through ``importlib_resources``, which is
    not a dependency of tensorflow-datasets and is not installed without TensorFlow."""
    return epath.Path(__file__)

  def _info(self) -> tfds.core.DatasetInfo:
    height, width = synthetic._as_hw(self.builder_config.image_size)
    extra = {"patient_id": tfds.features.Text()}
    if self.builder_config.kind == "faces":
      extra.update(visit=tfds.features.Scalar(np.int32), view=tfds.features.Text(), iga_grade=tfds.features.Scalar(np.int32),
                   face_inflammatory=tfds.features.Scalar(np.int32))
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__.splitlines()[0],
        features=records.tfds_features(synthetic.CLASS_NAMES, image_shape=(height, width, 3), extra=extra),
        # Keep generation order: record i of a split is the i-th image generate_split yields.
        disable_shuffling=True,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager  # Nothing to download.
    config = self.builder_config
    if config.kind == "faces":
      return {split: self._generate_faces(split) for split in ("train", "validation", "test")}
    splits = {
        "train": self._generate_examples("train", config.num_train),
        "validation": self._generate_examples("validation", config.num_validation),
        "test": self._generate_examples("test", config.num_test),
    }
    if config.kind == "hard":
      splits["train_plain"] = self._generate_examples("train", config.num_train, mode="plain")
    return splits

  def _generate_faces(self, split: str):
    from acne_jax.data import synthetic_face_crops

    config = self.builder_config
    for record in synthetic_face_crops.generate_split(split, num_patients=config.num_patients, seed=config.seed,
                                                      render_size=config.render_size or synthetic_face_crops.RENDER_SIZE,
                                                      crop_size=synthetic._as_hw(config.image_size)[0]):
      example = records.to_tfds_example(record)
      example.update({key: record[key] for key in synthetic_face_crops.EXTRA_FEATURES})
      yield record["image_id"], example

  def _generate_examples(self, split: str, num_images: int, mode: str = "masked"):
    config = self.builder_config
    if config.kind == "hard":
      from acne_jax.data import synthetic_hard

      height, width = tuple(config.face_size) if config.face_size[0] else synthetic_hard.FACE_HW
      for record in synthetic_hard.generate_hard_split(split, num_images, seed=config.seed, mode=mode, height=height,
                                                       width=width, crop_size=synthetic._as_hw(config.image_size)[0],
                                                       density_scale=config.density_scale):
        yield record["image_id"], records.to_tfds_example(record)
      return
    if config.kind != "patches":
      raise ValueError(f"SyntheticAcneConfig.kind must be 'patches', 'hard' or 'faces'; got {config.kind!r}.")
    for record in synthetic.generate_split(
        split,
        num_images,
        seed=config.seed,
        image_size=config.image_size,
        num_lesions=tuple(config.num_lesions),
        lesion_scale=config.lesion_scale,
    ):
      yield record["image_id"], records.to_tfds_example(record)
