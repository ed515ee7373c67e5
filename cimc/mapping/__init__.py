"""The mapping rules of a CIM macro as pure functions of the IR: which nodes are CIM layers
(``select``), how a layer's unrolled rows split into wordline segments (``tiling``) and where
its columns land on bitlines (``columns``). The passes apply them to a graph; the cost model,
``cimc validate``, morphing and the QAT hook call the same functions, so all agree by
construction."""
