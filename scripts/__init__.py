"""Scripts that produce the evidence tables of the README and docs."""
