"""The host-side NumPy IoU against hand values and the PyTorch reference."""

import numpy as np
import torch

from acne_jax.evaluation import numpy_boxes
from acne_jax.testing import torch_reference


def test_hand_values_and_degenerate_boxes():
  a = np.array([[0, 0, 10, 10]])
  b = np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10], [3, 3, 3, 3], [9, 9, 2, 2]])
  # 50 / 150; disjoint; identical; a point (area 0, union 100, intersection 0); inverted -> empty.
  np.testing.assert_allclose(numpy_boxes.pairwise_iou(a, b), [[1 / 3, 0, 1, 0, 0]])
  assert numpy_boxes.pairwise_iou(np.zeros((0, 4)), b).shape == (0, 5)
  np.testing.assert_allclose(numpy_boxes.elementwise_iou(a, b[:1]), [1 / 3])


def test_matches_pytorch_reference_on_random_boxes():
  rng = np.random.default_rng(0)
  xy = rng.uniform(-20, 200, (2, 60, 2))
  boxes = np.concatenate([xy, xy + rng.uniform(0, 80, (2, 60, 2))], -1)
  ours = numpy_boxes.pairwise_iou(boxes[0], boxes[1])
  theirs = torch_reference.box_iou(torch.as_tensor(boxes[0]), torch.as_tensor(boxes[1])).numpy()
  np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)
