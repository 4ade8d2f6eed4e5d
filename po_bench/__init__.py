"""po-bench: a Hydra-driven benchmark for preference-optimisation (*PO) methods."""

__version__ = "0.1.0"
