"""Design-space sweeps (``cimc sweep CONFIG``): compile every point of a grid or random sample of
macro geometry, converter bits, layer bits, bitline budget and morph λ; append one record per
point to a resumable JSONL file; report the Pareto set (table and ``pareto.png``).

* ``config``: the TOML format and its validation; ``space``: grid/random expansion and point keys;
* ``model``: the model as bytes shipped to workers; ``point``: one point → one record;
  ``trained``: the ``train = true`` path (seed training, trained morph loop);
* ``store``: the durable JSONL file; ``engines``: serial, process pool, Ray;
* ``pareto`` / ``report``: the nondominated set, its table and plot; ``run``: the driver.

See ``docs/sweep.md``.
"""
