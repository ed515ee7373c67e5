"""Rewrite the ONNX files the small zoo models ship with (``cimc/models/shipped``), exported
afresh with torch from their definitions (seed 0). Run it after changing one of them;
``tests/test_zoo.py`` checks that the shipped files equal a fresh export.

    python3 scripts/ship_zoo.py
"""

from __future__ import annotations

import cimc.models as models


def main() -> None:
    for name in models.SHIPPED:
        path = models.SHIPPED_DIR / f"{name}.onnx"
        models.export_onnx(name, path, fresh=True)
        print(f"wrote {path.name}: {path.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
