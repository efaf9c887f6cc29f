"""Top-level conftest: pytester for the pytest_cl plugin tests."""

pytest_plugins = ["pytester"]
