"""The optimisers of ``optimizer.name`` against PyTorch's: SGD with momentum and Adam, both with
PyTorch's coupled weight decay, under the warm-up schedule."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

from acne_jax.training import optim  # noqa: E402


def _run_both(name, steps=6, lr=0.01, weight_decay=1e-2, warmup_steps=3, warmup_ratio=0.1):
  rng = np.random.default_rng(0)
  start = rng.normal(size=(5, 3))
  grads = [rng.normal(size=(5, 3)) for _ in range(steps)]
  config = dict(name=name, lr=lr, momentum=0.9, betas=(0.9, 0.999), eps=1e-8, weight_decay=weight_decay,
                warmup_steps=warmup_steps, warmup_ratio=warmup_ratio, decay_steps=[], decay_factor=1.0, grad_clip_norm=0.0)
  tx, schedule = optim.make_optimizer(config, None)
  params = jnp.asarray(start, jnp.float32)
  state = tx.init(params)
  ours = []
  for g in grads:
    updates, state = tx.update(jnp.asarray(g, jnp.float32), state, params)
    params = optax.apply_updates(params, updates)
    ours.append(np.asarray(params))
  p = torch.nn.Parameter(torch.tensor(start, dtype=torch.float64))
  if name == "adam":
    opt = torch.optim.Adam([p], lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=weight_decay)
  else:
    opt = torch.optim.SGD([p], lr=lr, momentum=0.9, weight_decay=weight_decay)
  theirs = []
  for step, g in enumerate(grads):
    for group in opt.param_groups:  # MMDetection's linear warm-up, as optim.lr_schedule
      group["lr"] = float(schedule(step))
    p.grad = torch.tensor(g, dtype=torch.float64)
    opt.step()
    theirs.append(p.detach().numpy().copy())
  return ours, theirs


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_equals_pytorch(name):
  ours, theirs = _run_both(name)
  for step, (a, b) in enumerate(zip(ours, theirs)):
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6, err_msg=f"{name} step {step}")
  assert not np.allclose(ours[0], ours[-1])  # the steps moved the parameters


def test_unknown_optimizer_is_named():
  with pytest.raises(ValueError, match="optimizer.name='rmsprop': use one of sgd, adam"):
    optim.make_optimizer(dict(name="rmsprop", lr=0.1, momentum=0.9, weight_decay=0.0, warmup_steps=0, warmup_ratio=1.0,
                              decay_steps=[], decay_factor=1.0, grad_clip_norm=0.0), None)
