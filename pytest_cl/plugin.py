"""Entry point module loaded by pytest through the ``pytest11`` entry point.

It imports only pytest and the standard library at load time.
"""
