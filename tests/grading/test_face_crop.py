"""Face cropping: the detector finds synthetic frontal and profile faces, names photos without one."""

import numpy as np
import pytest

from acne_jax.data import synthetic
from acne_jax.data import synthetic_faces
from acne_jax.grading import face_crop


def box_iou(a, b):
  ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
  iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
  inter = ix * iy
  return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.fixture(scope="module")
def visits():
  """Visits of IGA grades 1, 4, 2 and 0 (seed 0: patients 3, 18 and the first visit of 25)."""
  chosen = synthetic_faces.generate_patient(0, 3) + synthetic_faces.generate_patient(0, 18) + synthetic_faces.generate_patient(0, 25)[:1]
  assert [v.grade for v in chosen] == [1, 4, 2, 0]
  return chosen


def test_detector_ships_in_an_installed_package():
  detector = face_crop.FaceDetector()  # fails here, naming the package, if it is not installed
  assert detector.detect(np.zeros((64, 64, 3), np.uint8)).boxes.shape == (0, 4)


@pytest.mark.parametrize("view", synthetic_faces.VIEWS)
def test_crop_finds_synthetic_faces(visits, view):
  for visit in visits:
    crop, box = face_crop.crop_face(visit.images[view], view, name=f"{visit.patient} {view}")
    assert crop.shape == (224, 224, 3) and crop.dtype == np.uint8
    assert box.shape == (4,) and box.dtype == np.float32
    assert box_iou(box, visit.face_boxes[view]) > 0.5, (visit.patient, visit.visit, view, box, visit.face_boxes[view])


def test_crop_is_the_square_around_the_box(visits):
  visit = visits[0]
  image = visit.images["frontal"]
  crop, box = face_crop.crop_face(image, "frontal", size=96, margin=0.0)
  x1, y1, x2, y2 = face_crop.crop_box(box, "frontal", margin=0.0)
  assert abs((x2 - x1) - max(box[2] - box[0], box[3] - box[1])) < 1e-3 and abs((x2 - x1) - (y2 - y1)) < 1e-3
  expected = face_crop.cut(image, np.array([x1, y1, x2, y2]), 96)
  np.testing.assert_array_equal(crop, expected)


def test_large_photo_is_detected_on_a_smaller_copy(visits):
  """A 4x photo (1408 px, over the detector's 960 px) gives the same face, 4x larger."""
  import cv2
  image = visits[0].images["frontal"]
  big = cv2.resize(image, (image.shape[1] * 4, image.shape[0] * 4), interpolation=cv2.INTER_LINEAR)
  _, small_box = face_crop.crop_face(image)
  crop, big_box = face_crop.crop_face(big)
  assert crop.shape == (224, 224, 3)
  assert box_iou(big_box / 4.0, small_box) > 0.8


def test_crop_box_geometry():
  box = np.array([100.0, 50.0, 180.0, 150.0], np.float32)  # 80 wide, 100 high
  square = face_crop.crop_box(box, "frontal", margin=0.1)
  np.testing.assert_allclose(square, [140 - 60, 100 - 60, 140 + 60, 100 + 60], atol=1e-4)
  left = face_crop.crop_box(box, "left", margin=0.1)  # the left cheek is on the photo's right
  right = face_crop.crop_box(box, "right", margin=0.1)
  np.testing.assert_allclose(left - square, [80 * face_crop.PROFILE_SHIFT, 0, 80 * face_crop.PROFILE_SHIFT, 0], atol=1e-4)
  np.testing.assert_allclose(right - square, -(left - square), atol=1e-4)
  with pytest.raises(ValueError, match="view must be one of"):
    face_crop.crop_box(box, "top")


def test_cut_pads_black_outside_the_photo():
  image = np.full((10, 10, 3), 200, np.uint8)
  out = face_crop.cut(image, np.array([-10.0, -10.0, 10.0, 10.0]), 20)
  assert out.shape == (20, 20, 3)
  assert (out[:10, :10] == 0).all() and (out[10:, 10:] == 200).all()


@pytest.mark.parametrize("kind", ["skin", "noise", "lesion_patch", "flat"])
def test_no_face_raises_naming_the_photo(kind):
  rng = np.random.default_rng(1)
  if kind == "skin":  # plain skin texture
    image = np.clip(synthetic._skin_albedo(rng, 320, 320, synthetic.sample_skin(rng)) * 255, 0, 255).astype(np.uint8)
  elif kind == "noise":
    image = rng.integers(0, 256, (300, 360, 3), dtype=np.uint8)
  elif kind == "lesion_patch":  # skin with acne, no face: the detector's job is faces, not skin
    image = synthetic.generate_example(rng, image_size=320)["image"]
  else:
    image = np.full((200, 200, 3), 128, np.uint8)
  with pytest.raises(face_crop.FaceNotFoundError) as caught:
    face_crop.crop_face(image, "frontal", name=f"visit_7/{kind}.jpg")
  assert isinstance(caught.value, ValueError)
  assert caught.value.name == f"visit_7/{kind}.jpg"
  message = str(caught.value)
  assert f"no face found in visit_7/{kind}.jpg" in message and "on_missing='skip'" in message


def test_crop_faces_skips_and_names(visits):
  images = [visits[0].images["frontal"], np.full((200, 200, 3), 90, np.uint8), visits[0].images["left"]]
  names = ["a.jpg", "blank.jpg", "c.jpg"]
  views = ["frontal", "frontal", "left"]
  crops = face_crop.crop_faces(images, views, names, size=64, on_missing="skip")
  assert crops.crops.shape == (2, 64, 64, 3) and crops.boxes.shape == (2, 4)
  assert crops.kept.tolist() == [0, 2]
  assert [name for name, _ in crops.skipped] == ["blank.jpg"] and "no face found in blank.jpg" in crops.skipped[0][1]
  with pytest.raises(face_crop.FaceNotFoundError, match="blank.jpg"):
    face_crop.crop_faces(images, views, names, on_missing="raise")
  with pytest.raises(ValueError, match="on_missing"):
    face_crop.crop_faces(images, views, names, on_missing="ignore")
  with pytest.raises(ValueError, match="3 images but 4 views and 4 names"):
    face_crop.crop_faces(iter(images), views + ["left"], names + ["d.jpg"], on_missing="skip")
  with pytest.raises(ValueError, match="more images than views"):
    face_crop.crop_faces(images, views[:2], names, on_missing="skip")


def test_bad_photos_are_named():
  with pytest.raises(ValueError, match=r"x.png: .*uint8 \[H, W, 3\]"):
    face_crop.crop_face(np.zeros((50, 50), np.uint8), name="x.png")
  with pytest.raises(ValueError, match=r"x.png: .*uint8"):
    face_crop.crop_face(np.zeros((50, 50, 3), np.float32), name="x.png")
  with pytest.raises(ValueError, match="x.png: view must be one of"):
    face_crop.crop_face(np.zeros((50, 50, 3), np.uint8), view="back", name="x.png")


def test_detection_leaves_openmp_settings_alone(visits):
  """Detection runs on one OpenMP thread and gives every runtime its thread count back (PyTorch's too)."""
  torch = pytest.importorskip("torch")
  threads = torch.get_num_threads()
  libraries = face_crop._openmp_libraries()
  before = [library.omp_get_max_threads() for library in libraries]
  face_crop.crop_face(visits[0].images["frontal"])
  assert [library.omp_get_max_threads() for library in face_crop._openmp_libraries()][:len(before)] == before
  assert torch.get_num_threads() == threads
