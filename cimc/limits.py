"""Every resource limit's default, declared once (the README's "Resource limits" table).

The limits with an option (``cimc.options``: ``--max-model-bytes``, ``--max-tensor-bytes``)
take their default from here, and their ``ResourceLimitError`` hint names the option; the
others are fixed bounds on the files cimc reads. Each is checked before the bytes are read or
the memory allocated.
"""

from __future__ import annotations

MiB = 2**20
GiB = 2**30

#: A model file, its external data included (``--max-model-bytes``).
MODEL_BYTES = 2 * GiB
#: Each static tensor (input, activation, output) and each tensor constant folding creates;
#: 4× this for all of them together (``--max-tensor-bytes``).
TENSOR_BYTES = GiB
#: The memory one calibration or evaluation run, or a build's cell grids, may take:
#: ``MEMORY_FACTOR`` × ``--max-tensor-bytes`` (12 GiB by default: the 224×224 UNets and
#: DenseNet-121 of the real-model corpus calibrate on 16 images within it).
MEMORY_FACTOR = 12


def memory_budget(max_tensor_bytes: int = TENSOR_BYTES) -> int:
    """The memory budget for a ``--max-tensor-bytes`` of ``max_tensor_bytes``."""
    return MEMORY_FACTOR * max_tensor_bytes


MEMORY_BYTES = memory_budget()
#: An ``.npy`` / ``.npz`` data file, also the unpacked members of an ``.npz``.
DATA_FILE_BYTES = GiB
#: An image file of a dataset, and its decoded pixels.
IMAGE_FILE_BYTES = 32 * MiB
IMAGE_PIXELS = 64 * MiB
#: Entries listed in a data folder; images in an image-folder dataset.
FOLDER_ENTRIES = 200_000
DATASET_IMAGES = 200_000
#: ``--image-size`` (pixels a side).
IMAGE_SIZE = 4096
#: A build's ``manifest.json``.
MANIFEST_BYTES = 16 * MiB
#: Compute phases of a build's timeline (tiles × passes over every layer, ``cimc.cost.timeline``).
TIMELINE_PHASES = 100_000
#: Each other file of a build: its JSON and text files (layout, graph, quant, schedule,
#: report, graph.txt …) and its array files (``weights.safetensors``, ``digital.safetensors``,
#: ``model.cim.onnx``: as large as the model they come from, twice the model limit).
BUILD_TEXT_BYTES = GiB
BUILD_ARRAY_BYTES = 4 * GiB
#: A ``--bits`` / ``--macro`` file, a sweep config.
OPTIONS_FILE_BYTES = 16 * MiB
#: A sweep's results file (JSON lines).
RESULTS_FILE_BYTES = GiB
#: How deeply arrays and objects (tables) may nest in any JSON or TOML file cimc reads.
NESTING_DEPTH = 64
#: Points of one sweep (a grid's product of axis sizes, or a random sweep's samples), counted
#: before any point is made.
SWEEP_POINTS = 1_000_000
