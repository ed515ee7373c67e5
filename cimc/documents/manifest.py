"""``manifest.json``: what made the build (tool, version, macro, input, options) and the sha256
of every other file, so a reader can tell a modified file."""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import ConfigDict, Field

from cimc.documents.base import SHA256_PATTERN, Document, JsonObject, Size
from cimc.documents.macro import MacroDoc

#: 2: ``layout.json`` layers carry their ``geometry`` (version 1 builds lack it: recompile them).
SCHEMA_VERSION: Final = 4

Sha256 = Annotated[str, Field(pattern=SHA256_PATTERN)]
FileName = Annotated[str, Field(pattern="^[a-z0-9_.-]+$")]


class Source(Document):
    """The model the build was compiled from."""

    kind: Literal["onnx", "zoo"]
    """``onnx``: a model file; ``zoo``: a model of cimc's zoo."""
    name: str
    """The file name or zoo name."""
    sha256: Sha256
    """The sha256 of the model bytes."""


class Manifest(Document):
    """The build's identity and the sha256 of every other file of the folder."""

    model_config = ConfigDict(title="cimc build manifest")

    schema_version: Literal[4]
    """Version of the build format."""
    tool: Literal["cimc"]
    """Always ``cimc``: what made the folder."""
    tool_version: str
    """The cimc version that compiled the build."""
    macro: MacroDoc
    """The macro compiled for."""
    bitline_budget: Size
    """Bitlines available on chip (the model reloads weights per inference beyond it)."""
    input: Source
    """The compiled model."""
    options: JsonObject
    """The compile options, as given (free-form)."""
    files: dict[FileName, Sha256]
    """sha256 of every other file of the build, by file name (filled in when the build is written)."""
