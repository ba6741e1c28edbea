"""Networks: the full and proxy U-Nets of the proxy-network study, built from :class:`proxyhpo.config.NetworkConfig`."""

from proxyhpo.networks.unet import build_network, count_parameters

__all__ = ["build_network", "count_parameters"]
