"""Infinity (scale-wise autoregressive text-to-image) and the InfinityStyle method, in plain PyTorch."""
