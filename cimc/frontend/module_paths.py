"""The torch module a node comes from, as torch's dynamo exporter records it.

``torch.onnx.export(..., dynamo=True)`` names nodes ``node_conv2d_1`` and writes the module
scopes into the node's ``metadata_props``: key ``pkg.torch.onnx.name_scopes``, a Python list
literal such as ``['', 'features', 'features.1', 'features.1.conv', 'features.1.conv.0',
'conv2d_1']`` — the scopes from the root module down, the last being the op's own. The module
path is the scope before the op's (``features.1.conv.0``).

The value is untrusted: it is read only when at most ``MAX_SCOPES_CHARS`` long and a list of
single-quoted strings without escapes (a regex, nothing is evaluated), and the path is kept only
when it is a dotted name (``documents.layout.MODULE_PATH``) of at most ``MAX_MODULE_PATH``
characters. Anything else — too long, malformed, control characters, a root-level op — gives
no path, never an error.
"""

from __future__ import annotations

import re

import onnx

from cimc.documents.layout import MAX_MODULE_PATH, MODULE_PATH

#: The ``metadata_props`` key of the scopes.
SCOPES_KEY = "pkg.torch.onnx.name_scopes"
#: The longest scopes value read (a deep module nesting stays far below it).
MAX_SCOPES_CHARS = 4096
_ITEM = r"'[^'\\\x00-\x1f\x7f]*'"
_LIST = re.compile(rf"\[\s*(?:{_ITEM}(?:\s*,\s*{_ITEM})*)?\s*\]")
_SCOPE = re.compile(r"'([^']*)'")
_PATH = re.compile(MODULE_PATH)


def scopes_path(value: str) -> str | None:
    """The module path of a ``name_scopes`` value (its second-to-last scope), or ``None``."""
    if len(value) > MAX_SCOPES_CHARS or not _LIST.fullmatch(value):
        return None
    scopes = _SCOPE.findall(value)
    path = scopes[-2] if len(scopes) >= 2 else ""
    return path if len(path) <= MAX_MODULE_PATH and _PATH.fullmatch(path) else None


def module_path(node: onnx.NodeProto) -> str | None:
    """The node's module path from its ``metadata_props`` (the first ``SCOPES_KEY`` entry)."""
    value = next((p.value for p in node.metadata_props if p.key == SCOPES_KEY), None)
    return None if value is None else scopes_path(value)
