"""CIM-aware morphing (paper Section II.C, Eq. 1–5): fit a model to a bitline budget by pruning
unimportant channels and re-growing the network to fill the macros.

* ``channel_groups`` / ``channel_rules``: which channels must change together (BN, residual Add
  incl. a channel-Pad shortcut, Concat, depthwise convs, Flatten→Gemm); inputs/outputs fixed.
* ``plan``: channel plans — BN-γ importance, prune by threshold / keep ratio, target widths.
* ``layout`` / ``initialise``: per-tensor channel maps and new-channel initialisation used by the
  ``morph-channels`` pass (``cimc.morph.channels_pass``).
* ``bitlines`` / ``expand``: the compile path's bitline count as a function of the widths, and
  the search for the largest single expansion ratio ``R`` that fits the budget.
* ``costs`` / ``regularizer`` / ``shrink``: the MorphNet parameter cost (Eq. 2) and its bitline
  variant, as a torch regularizer with the paper's λ schedule, and its data-free proximal step.
* ``structure``: the structure-only morph (``cimc compile --morph``); ``loop``: the trained
  shrink → prune → expand → fine-tune loop (``cimc morph``); ``paper``: the README table.

Submodules are imported on demand (``loop`` and ``regularizer`` pull in torch).
"""
