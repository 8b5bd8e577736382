"""The benchmark (issue 5), a package of modules: `python bench/run.py` or `python -m bench`.

common (measuring a child, /proc readings, constants), harness (the lab it runs against),
once / daemon / metrics / detect (the parts), exporter_update (a child the metrics part
runs), report (targets, tables), cli (flags and the run). Kept free of imports: the
exporter_update child is started as `python -m bench.exporter_update` and measures RSS.
"""
