"""The entry points, thin over the library: argument parsing, calls into ``po_bench``, printing and
exit codes.

- :mod:`po_bench.cli.app`: ``po-bench`` (the Hydra app: one run, or a sweep with ``-m``), and
  ``po-bench cache ...`` dispatched to :mod:`po_bench.cli.cache`;
- :mod:`po_bench.cli.table`: ``po-bench-table`` (a sweep's table: CSV, Markdown, plots);
- :mod:`po_bench.cli.report`: ``po-bench-report`` (a sweep's HTML report);
- :mod:`po_bench.cli.data`: ``po-bench-data`` (on-policy data, dataset inspection).

``po_bench/cli/`` may import anything in the package; nothing in the package imports it
(``tests/test_architecture.py`` checks both).
"""
