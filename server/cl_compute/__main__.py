"""``python -m cl_compute``: the same as the ``cl-compute`` command."""

from cl_compute.cli import main

if __name__ == "__main__":
    main()
