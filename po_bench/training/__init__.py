"""Training: the Method record (methods.py), po-bench's pure losses (losses.py, listwise.py), models and the
one package that touches TRL (trl/)."""
