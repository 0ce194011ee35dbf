"""The trace-time shape checker every op uses."""

import numpy as np
import pytest

from acne_jax.ops.shapes import check_shape


def test_binds_names_and_checks_consistency():
  dims = check_shape("f", "boxes", np.zeros((5, 4)), "[N, 4]")
  assert dims == {"N": 5}
  check_shape("f", "scores", np.zeros(5), "[N]", dims)
  with pytest.raises(ValueError, match=r"f: argument 'scores' must have shape \[N\]; got shape \[6\] \('N' is 6 here but 5 elsewhere\)"):
    check_shape("f", "scores", np.zeros(6), "[N]", dims)


def test_rank_fixed_sizes_and_ellipsis():
  with pytest.raises(ValueError, match="expected rank 2"):
    check_shape("f", "x", np.zeros((2, 3, 4)), "[N, 4]")
  with pytest.raises(ValueError, match="dimension '4' is 5"):
    check_shape("f", "x", np.zeros((2, 5)), "[N, 4]")
  check_shape("f", "x", np.zeros((2, 3, 4)), "[..., 4]")
  check_shape("f", "x", np.zeros((4,)), "[..., 4]")
  with pytest.raises(ValueError, match="expected rank >= 1"):
    check_shape("f", "x", np.float32(1.0), "[..., 4]")
