"""A build directory as files: atomic writing, bounded and link-safe reading, and the
low-level file formats (safetensors, graph text) every writer, checker and view shares."""
