"""`make bench`: the gateway against the HTTP floor and MLflow's own servers, on this machine.

See benchmarks/run.py for what runs, and BENCHMARKS.md at the repository root for the last results.
"""
