"""Graph passes of cimc, one per module (installed as ``cimc.passes``)."""
