"""proxyhpo: proxy data and proxy networks for hyper-parameter search in 3D medical image segmentation."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("proxyhpo")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
