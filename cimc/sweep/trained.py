"""The trained path of a sweep point (``train = true`` / ``--train``), through ``cimc.train``.

1. float seed training of the source model (``training.seed_epochs`` epochs of cimc's ``fit``
   on ``training.data``), cached per process: every point of a worker shares it;
2. a point with ``morph_lambda = λ`` then runs the trained morph loop (``cimc.morph.loop``:
   shrink with ``λ·F = λ`` at the start of each round — ``LoopOptions.strength``; ``λ = 0``
   is a fixed zero regularizer —, prune, expand to the point's budget, fine-tune) for
   ``training.rounds`` rounds of ``training.epochs`` shrink and fine-tune epochs each.

Without ``train`` a point with λ runs the structure-only morph of ``cimc compile --morph``
instead (``cimc.sweep.point``). Training is seeded (``training.seed``), so points are
reproducible on one machine; torch does not promise the same bits across machines.
"""

from __future__ import annotations

from typing import Any

from cimc.ir.graph import Graph
from cimc.macro import MacroSpec

_SEEDED: dict[str, Graph] = {}


def _data(graph: Graph, training: dict[str, Any], root: str | None) -> Any:
    from cimc.data.preprocess import Preprocess
    from cimc.train import load_train_data

    return load_train_data(training["data"], root=root, input_shape=graph.shape(graph.inputs[0]),
                           batch_size=training["batch_size"], seed=training["seed"],
                           preprocess=Preprocess.from_options(training.get("image_size"), training.get("mean"),
                                                              training.get("std")))


def seeded(graph: Graph, sha256: str, training: dict[str, Any], root: str | None) -> Graph:
    """``graph`` after ``seed_epochs`` of float training (cached per model and training table)."""
    if not training["seed_epochs"]:
        return graph
    key = f"{sha256}:{sorted(training.items())}"
    if key not in _SEEDED:
        from cimc.train import fit, module_from_graph

        module = module_from_graph(graph)
        fit(module, _data(graph, training, root), "float", epochs=training["seed_epochs"], lr=1e-2,
            progress=False, seed=training["seed"])
        _SEEDED[key] = module.to_graph()
    return _SEEDED[key]


def morphed(graph: Graph, macro: MacroSpec, budget: int, lam: float, point: dict[str, Any],
            training: dict[str, Any], root: str | None) -> tuple[Graph, dict[str, Any]]:
    """The trained morph loop at ``λ``; returns the graph and the last round's log."""
    from cimc.morph.loop import LoopOptions, morph_loop
    from cimc.morph.planning import MorphOptions

    structure = MorphOptions(tiling=point.get("tiling", "channel"), placement=point.get("placement", "packed"),
                             map_fc=bool(point.get("map_fc", False)), seed=training["seed"])
    options = LoopOptions(rounds=training["rounds"], shrink_epochs=training["epochs"],
                          finetune_epochs=training["epochs"], lam=0.0 if lam == 0 else None,
                          strength=lam if lam > 0 else 1.0, morph=structure, seed=training["seed"], progress=False)
    result = morph_loop(graph, _data(graph, training, root), macro, budget, options)
    last = result.rounds[-1].to_dict()
    return result.graph, {"trained_accuracy": last["accuracy"], "ratio": last["ratio"], "lam": last["lam"]}
