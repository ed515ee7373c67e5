"""Checking a build without trusting it: ``cimc validate`` and the checks the emulator runs first."""
