"""Networks: the families a trial trains (:data:`proxyhpo.registry.NETWORK_FAMILIES`; the paper's residual U-Net and
its proxies), built from :class:`proxyhpo.config.NetworkConfig`, and the NAS supernet of :class:`proxyhpo.config.NasSearchSpace`."""

from proxyhpo.networks.supernet import Supernet, estimate_memory, feature_sizes, memory_breakdown, path_parameter_count
from proxyhpo.networks._base import NetworkFamily, build_network
from proxyhpo.networks.unet import count_parameters

__all__ = ["NetworkFamily", "build_network", "count_parameters", "Supernet", "estimate_memory", "feature_sizes", "memory_breakdown", "path_parameter_count"]
