"""Loads libusb-1.0 for tflite-support's native module (no system package needed)."""

import ctypes
import functools


@functools.lru_cache(maxsize=None)
def load_libusb() -> str:
  """Loads the libusb shipped by the `libusb-package` wheel into the global namespace.

  tflite-support's pybind module links against libusb-1.0.so.0, which slim machines lack.

  Returns:
    The path of the loaded library.
  """
  import libusb_package  # pylint: disable=g-import-not-at-top
  path = str(libusb_package.get_library_path())
  ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
  return path
