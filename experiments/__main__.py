"""``python -m experiments --list``: the experiments found in this folder, one name a line.

Each runs as ``python -m experiments.<name> --config default|smoke --workdir DIR``; see
``experiments/<name>/README.md``.
"""

from __future__ import annotations

import argparse

from experiments.common import discover


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m experiments", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--list", action="store_true", help="print the experiments' names, one a line")
    args = p.parse_args(argv)
    if not args.list:
        p.error("nothing to do: pass --list (and run one with python -m experiments.<name>)")
    print("\n".join(discover()))


if __name__ == "__main__":
    main()
