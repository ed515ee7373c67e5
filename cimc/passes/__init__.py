"""Graph passes of cimc, one per module, and the pass manager (``cimc.passes.manager``)."""
