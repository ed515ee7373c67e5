"""cimc's benchmarks: ``python3 -m benchmarks.run [--quick] [--only PATTERN] [--json OUT]``.

Each ``bench_<topic>.py`` module exposes ``benchmarks(quick) -> list[Benchmark]``
(``benchmarks.harness``); ``benchmarks.scaling`` draws the compile-time scaling curve.
"""
