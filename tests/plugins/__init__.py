"""Plug-ins registered from outside po_bench/ (the recipes of CONTRIBUTING.md, carried out by tests)."""
