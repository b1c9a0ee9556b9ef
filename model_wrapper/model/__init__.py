"""What travels inside every logged version: the pyfunc, its input contract, the transforms, the
runtime that runs the network, and the feature code (candles -> features).

This package is logged with each version (`code_paths`) and loaded from there under a name of its
own for each load (see pyfunc.py), so it imports only itself (relative imports), NumPy, pandas
and MLflow; TensorFlow only lazily, as a runtime fallback. Nothing else of this repository may be
imported here: a version must load where only mlflow, numpy and pandas are installed.
"""
