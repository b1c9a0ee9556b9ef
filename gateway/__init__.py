"""The REST gateway over the registered pyfunc (see README)."""
