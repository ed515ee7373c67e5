"""Quantization-aware training hook (torch)."""
