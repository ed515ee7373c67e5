"""The bit-accurate macro emulator: it reads only a build directory (the macro arrays of cell
codes, ``layout.json``, ``quant.json``, ``graph.json`` and ``digital.safetensors``), checks
it, and runs inference the way the macros would. Its ADC codes, accumulated sums and
outputs equal ``onnxruntime(model.cim.onnx)`` and the numpy reference bit for bit.

    emu = Emulator.open("build/")
    result = emu.run(x, record=True)   # outputs + per-layer traces
    write_golden("golden/", emu, x)    # test vectors for an RTL or hardware emulator
"""

from cimc.build.emulator_files import BuildFiles, read_build
from cimc.emulator.golden import write_golden
from cimc.emulator.run import Emulator

__all__ = ["BuildFiles", "Emulator", "read_build", "write_golden"]
