"""One module per op (or per tight family of ops sharing every rule); each defines ``DEFS``,
a tuple of ``cimc.ops.base.OpDef``. ``cimc.ops.op_table`` collects every module here."""
