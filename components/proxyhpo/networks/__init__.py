"""Networks: the full and proxy U-Nets of the proxy-network study, built from :class:`proxyhpo.config.NetworkConfig`,
and the NAS supernet of :class:`proxyhpo.config.NasSearchSpace`."""

from proxyhpo.networks.supernet import Supernet, estimate_memory, feature_sizes, memory_breakdown, path_parameter_count
from proxyhpo.networks.unet import build_network, count_parameters

__all__ = ["build_network", "count_parameters", "Supernet", "estimate_memory", "feature_sizes", "memory_breakdown", "path_parameter_count"]
