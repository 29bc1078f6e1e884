"""``python -m dlnvolume``: the ``dlnvolume`` command line.

The CLI lives in :mod:`analysis.cli`; it is imported inside :func:`main`, only when this module runs,
so ``import dlnvolume`` stays free of the analysis package (ARCHITECTURE.md: imports point
``analysis → samplers → dlnvolume``).
"""

from __future__ import annotations

import sys


def main() -> int:
    from analysis.cli import main as cli_main  # lazy: only for `python -m dlnvolume`

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
