"""cimc: a compiler from trained CNNs (ONNX) to compute-in-memory macros.

The flow, by package: ``frontend`` (ONNX → ``ir``) → ``passes`` (registered graph passes run by
the pass manager, using ``quant`` — the numerical contract — and ``cost``) → ``backend`` (the
build directory's files, with ``lowering`` for ``model.cim.onnx``) → ``build`` (atomic writing,
safe reading). ``check``, ``emulator`` and ``views`` read builds; ``morph``, ``train``,
``search`` and ``sweep`` drive the pipeline; ``api`` and ``cli`` are the front doors.
``docs/architecture.md`` has the picture. Importing ``cimc`` is cheap: torch is only imported
by the training hook and the model zoo.
"""

__version__ = "0.1.0"
