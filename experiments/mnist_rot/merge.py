"""``python -m experiments.mnist_rot.merge OUT.json A/results.json B/results.json ...``

Join the results of pieces of one protocol run in separate workdirs (one model or seed each,
possibly on different machines) into one results file, and draw its figure and table next to
it (``OUT``'s folder, ``mnist_rot.png``/``.pdf``/``.md``). See :func:`experiments.mnist_rot.run.merge`.
"""

import argparse
import json
import pathlib

from experiments.common import save_json
from experiments.mnist_rot.run import merge, plot


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m experiments.mnist_rot.merge")
    p.add_argument("out", type=pathlib.Path, help="the merged results file to write")
    p.add_argument("parts", type=pathlib.Path, nargs="+", help="results.json files of the pieces, in order")
    args = p.parse_args(argv)
    try:
        results = merge([json.loads(path.read_text()) for path in args.parts])
    except ValueError as e:
        p.error(str(e))
    results["merged_from"] = [str(path) for path in args.parts]
    save_json(args.out, results)
    figs = plot(results, args.out.parent / "mnist_rot")
    print(f"wrote {args.out} and {', '.join(str(f) for f in figs)}")
    return results


if __name__ == "__main__":
    main()
