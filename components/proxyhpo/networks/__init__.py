"""Networks: the full and proxy U-Nets of the proxy-network study."""

from proxyhpo.networks.unet import NetworkConfig, build_network, check_patch_size, count_parameters

__all__ = ["NetworkConfig", "build_network", "check_patch_size", "count_parameters"]
