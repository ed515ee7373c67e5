"""The hardware cost model, shared by the passes, morphing, search, sweeps and the backend."""
