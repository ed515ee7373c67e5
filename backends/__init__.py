"""Backends of cimc: the macro backend and emulator (installed as ``cimc.backends``)."""
