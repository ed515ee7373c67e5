"""The macro backend: a placed, quantized graph becomes the files of a build directory
(layout, cell codes, schedule, reports, quantization and compute files)."""
