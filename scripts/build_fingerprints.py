"""The sha256 of every file of every build over the zoo × a set of compile options.

    python3 scripts/build_fingerprints.py -o fingerprints.json          # compute and write
    python3 scripts/build_fingerprints.py --check tests/golden/build_fingerprints.json

A refactoring that must not change behaviour runs this before and after: the two JSON files
must be equal (``--check`` compares against a committed file and lists every difference).
Each zoo model is exported once and compiled from its ONNX file; one case compiles a zoo model
by name. ``--only SUBSTRING`` restricts the cases.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

MODELS = ("tiny_cnn", "tiny_residual", "digits_cnn", "vgg9", "resnet18", "vgg16")
#: name → compile_model keyword arguments.
OPTION_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "dense-aligned-fc": {"tiling": "dense", "placement": "aligned", "map_fc": True},
    "column-noshift": {"granularity": "column", "no_shift": True},
    "sliced-8-8": {"w_bits": 8, "a_bits": 8},
    "small64-lsq-bl": {"macro": "small-64", "weight_method": "lsq", "bitline_budget": 4096},
    "mixed-3-6-4": {"w_bits": 3, "a_bits": 6, "adc_bits": 4, "granularity": "column"},
}
#: Heavy models get fewer option sets (time).
HEAVY = {"vgg16": ("default", "sliced-8-8"), "resnet18": ("default", "column-noshift", "sliced-8-8")}


def cases() -> list[tuple[str, str, dict[str, Any]]]:
    """(case name, model, options) for every case."""
    out = [(f"{m}/{o}", m, opts) for m in MODELS for o, opts in OPTION_SETS.items() if o in HEAVY.get(m, OPTION_SETS)]
    out.append(("vgg9/zoo-by-name-bl4096", "vgg9", {"bitline_budget": 4096, "_by_name": True}))
    out.append(("tiny_cnn/morph", "tiny_cnn", {"bitline_budget": 64, "_morph": True, "macro": "small-64"}))
    return out


def fingerprint(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def run(only: str | None) -> dict[str, dict[str, str]]:
    import cimc.models as models
    from cimc.api import compile_model

    result: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory(prefix="cimc-fp-") as tmp:
        exported: dict[str, Path] = {}
        for name, model, options in cases():
            if only and only not in name:
                continue
            opts = dict(options)
            by_name, morph = opts.pop("_by_name", False), opts.pop("_morph", False)
            if morph:
                from cimc.morph.planning import MorphOptions

                opts["morph"] = MorphOptions.usage_search()
            if model not in exported and not by_name:
                exported[model] = Path(tmp) / f"{model}.onnx"
                models.export_onnx(model, exported[model])
            out = Path(tmp) / name.replace("/", "__")
            compile_model(model if by_name else exported[model], out, **opts)
            result[name] = fingerprint(out)
            print(f"{name}: {len(result[name])} files", file=sys.stderr)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-o", "--output", type=Path)
    parser.add_argument("--check", type=Path)
    parser.add_argument("--only")
    args = parser.parse_args()
    result = run(args.only)
    if args.output:
        args.output.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    if args.check:
        expected = json.loads(args.check.read_text(encoding="utf-8"))
        diffs = [f"{case}/{file}" for case in sorted(set(expected) | set(result))
                 for file in sorted(set(expected.get(case, {})) | set(result.get(case, {})))
                 if (args.only is None or args.only in case)
                 and expected.get(case, {}).get(file) != result.get(case, {}).get(file)]
        print("\n".join(diffs) if diffs else f"identical: {len(result)} builds")
        return 1 if diffs else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
