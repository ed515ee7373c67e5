"""cimc: a compiler from trained CNNs (ONNX) to compute-in-memory macros.

The package is split by dependency direction: ``cimc.ir`` (graph IR) is used by
``cimc.passes`` and ``cimc.backends``, which are used by ``cimc.api``, which the
command line (``cimc.cli``) drives. Importing ``cimc`` is cheap: torch is only
imported by the training hook and the model zoo.
"""

__version__ = "0.1.0"
