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
