"""The numerical contract of a CIM layer and everything that implements it: quantizers,
bit-slicing, step search, calibration, the numpy reference executor and QAT metadata."""
