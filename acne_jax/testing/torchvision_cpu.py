"""Import torchvision's PyPI wheel (a CUDA build) on a machine whose torch is the CPU build.

torchvision's wheel for our torch is built against CUDA: its ``_C.so`` (the C++ kernels:
``nms``, ``roi_align``, ``deform_conv2d``, ...) lists ``libcudart.so.13``, ``libc10_cuda.so`` and
``libtorch_cuda.so`` as needed libraries. The CPU torch has none of them, so ``_C.so`` fails to
load, ``torchvision.extension._has_ops()`` is false and ``import torchvision`` stops in its
meta registrations. The kernels we want to compare against are the CPU ones, which never touch
CUDA; what blocks them is only the dynamic linker.

``import_torchvision()`` works around that without changing the wheel:

1. it reads the undefined CUDA symbols of ``_C.so`` (``nm -D``, names demangled by ``c++filt``
   to tell variables from functions);
2. it writes three stub libraries with exactly those symbols and the three missing sonames,
   compiled with ``gcc`` into a cache folder (keyed by a hash of ``_C.so``):
   the CUDA runtime's registration hooks (``__cudaRegisterFatBinary`` and friends, run by
   ``_C.so``'s static constructors and destructors) are no-ops; every other stub prints which
   CUDA function was called and aborts, so a stub can never return a wrong value silently;
3. it loads the stubs with ``RTLD_GLOBAL`` after ``import torch`` and before
   ``import torchvision``: the dynamic linker then finds the needed sonames already loaded.

With CPU tensors no stub is ever called (a call would abort the process with a message naming
it). Where ``gcc``, ``nm`` or ``c++filt`` is missing, ``TorchvisionUnavailable`` says so, and
tests skip with that reason. This module is test support: the package itself never needs
torchvision.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

_CUDART = "libcudart.so.13"
_C10_CUDA = "libc10_cuda.so"
_TORCH_CUDA = "libtorch_cuda.so"
_REQUIRED_TOOLS = ("gcc", "nm", "c++filt")


class TorchvisionUnavailable(RuntimeError):
  """torchvision cannot be imported here; the message says why and what to install."""


def _cache_root() -> pathlib.Path:
  root = os.environ.get("ACNE_JAX_CACHE") or os.path.join(
      os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "acne_jax")
  return pathlib.Path(root) / "torchvision_cpu_stubs"


def _undefined_cuda_symbols(library: pathlib.Path) -> dict[str, list[tuple[str, str]]]:
  """Undefined CUDA symbols of ``library`` grouped by the stub that must define them.

  Returns ``{soname: [(mangled_name, demangled_name), ...]}``.
  """
  listing = subprocess.run(["nm", "-D", "--undefined-only", str(library)], check=True,
                           capture_output=True, text=True).stdout
  names = [line.split()[-1] for line in listing.splitlines() if line.strip()]
  wanted = []
  for name in names:
    bare = name.split("@")[0]
    if name.endswith("@" + _CUDART):
      wanted.append((_CUDART, bare))
    elif "4cuda" in bare and bare.startswith("_ZN"):
      # c10::cuda::* lives in libc10_cuda, at::cuda::* in libtorch_cuda.
      wanted.append((_TORCH_CUDA if bare.startswith("_ZN2at") else _C10_CUDA, bare))
  demangled = subprocess.run(["c++filt"], input="\n".join(b for _, b in wanted), check=True,
                             capture_output=True, text=True).stdout.splitlines()
  groups: dict[str, list[tuple[str, str]]] = {_CUDART: [], _C10_CUDA: [], _TORCH_CUDA: []}
  for (soname, bare), pretty in zip(wanted, demangled):
    groups[soname].append((bare, pretty))
  return groups


def _stub_source(symbols: list[tuple[str, str]]) -> str:
  lines = ["#include <stdio.h>", "#include <stdlib.h>",
           "static void *acne_jax_fatbin_handle[4];"]
  for mangled, pretty in symbols:
    if mangled == "__cudaRegisterFatBinary":
      lines.append(f"void **{mangled}(void *fatbin) {{ (void)fatbin; return acne_jax_fatbin_handle; }}")
    elif mangled.startswith(("__cudaRegister", "__cudaUnregister", "__cudaInitModule")):
      lines.append(f"long {mangled}(void) {{ return 0; }}")
    elif "(" not in pretty and mangled.startswith("_Z"):
      lines.append(f"void *{mangled} = 0;  /* {pretty} */")
    else:
      message = pretty.replace("\\", "\\\\").replace('"', '\\"')
      lines.append(
          f'void {mangled}(void) {{ fprintf(stderr, "acne_jax torchvision_cpu stub: CUDA function '
          f'{message} was called on a CPU-only machine\\n"); abort(); }}')
  return "\n".join(lines) + "\n"


def _build_stubs(library: pathlib.Path) -> list[pathlib.Path]:
  digest = hashlib.sha256(library.read_bytes()).hexdigest()[:16]
  folder = _cache_root() / digest
  targets = [folder / soname for soname in (_CUDART, _C10_CUDA, _TORCH_CUDA)]
  if all(t.exists() for t in targets):
    return targets
  folder.mkdir(parents=True, exist_ok=True)
  groups = _undefined_cuda_symbols(library)
  with tempfile.TemporaryDirectory(dir=folder) as work:
    work_dir = pathlib.Path(work)
    for target in targets:
      soname = target.name
      source = work_dir / f"{soname}.c"
      source.write_text(_stub_source(groups[soname]))
      command = ["gcc", "-shared", "-fPIC", "-o", str(work_dir / soname), str(source),
                 f"-Wl,-soname,{soname}"]
      if soname == _CUDART:  # _C.so asks for version node "libcudart.so.13" on these symbols.
        script = work_dir / "cudart.map"
        script.write_text(f"{_CUDART} {{ global: *; }};\n")
        command.append(f"-Wl,--version-script={script}")
      result = subprocess.run(command, capture_output=True, text=True)
      if result.returncode:
        raise TorchvisionUnavailable(f"building the CUDA stub {soname} with gcc failed:\n{result.stderr}")
      os.replace(work_dir / soname, target)  # atomic: a concurrent builder never sees half a file
  return targets


def import_torchvision():
  """Imports torchvision with its C++ CPU kernels; returns the module.

  Raises:
    TorchvisionUnavailable: torchvision is not installed, or its kernels cannot be loaded here
      (the message names the missing tool or the failing step).
  """
  if "torchvision" in sys.modules and getattr(sys.modules["torchvision"], "_acne_jax_ops", False):
    return sys.modules["torchvision"]
  spec = importlib.util.find_spec("torchvision")
  if spec is None or not spec.submodule_search_locations:
    raise TorchvisionUnavailable("torchvision is not installed: pip install -e '.[test]'")
  library = pathlib.Path(list(spec.submodule_search_locations)[0]) / "_C.so"
  if not library.exists():
    raise TorchvisionUnavailable(f"{library} is missing: reinstall torchvision")
  import torch

  if not torch.cuda.is_available() and not _cuda_libraries_present(library):
    missing = [tool for tool in _REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
      raise TorchvisionUnavailable(
          f"torchvision's CUDA build needs CUDA stub libraries on this CPU-only machine, and "
          f"building them needs {', '.join(missing)} (install gcc and binutils)")
    for stub in _build_stubs(library):
      ctypes.CDLL(str(stub), mode=ctypes.RTLD_GLOBAL)
  try:
    import torchvision
  except Exception as error:  # noqa: BLE001 - the reason is re-raised with context
    raise TorchvisionUnavailable(f"import torchvision failed after loading the CUDA stubs: {error!r}") from error
  if not torchvision.extension._has_ops():
    raise TorchvisionUnavailable("torchvision imported but its C++ operators did not load")
  torchvision._acne_jax_ops = True
  return torchvision


def _cuda_libraries_present(library: pathlib.Path) -> bool:
  """True where the real CUDA libraries torchvision links against can be loaded (a GPU build)."""
  try:
    ctypes.CDLL(_C10_CUDA)
    ctypes.CDLL(_TORCH_CUDA)
  except OSError:
    return False
  return True
