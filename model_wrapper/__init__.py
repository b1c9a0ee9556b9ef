"""The forecaster and everything around it, by role:

- model/       what travels inside every logged version: the pyfunc, its input contract, the
               transforms, the runtime and the feature code (numpy, pandas and MLflow only);
- data/        candles from files or the seeded synthetic series, and windows cut from them;
- training/    the network, the recipe (fit, shrinkage, interval calibration) and the run;
- evaluation/  metrics, out-of-sample evaluation, the one alias gate, backtests, reports;
- registry/    the models:/ URI parser, logging and registering a version, re-wrapping one.

Defaults (model name, experiment, tracking URI) live in defaults.py; errors a person can fix in
errors.py. Nothing here imports the gateway.
"""
