"""Run one InVEST model from a JSON file of arguments, in the InVEST peer's Python.

``<peer>/bin/python bench/invest_runner.py args.json`` where args.json is
``{"model": "sdr" | "carbon" | "annual_water_yield", "args": {...InVEST args...}}``. Prints the wall time and
the natcap.invest version as one JSON line. The peer is built by ../shared/tools/invest-peer/setup.sh
(natcap.invest 3.20.2 from its PyPI sdist); this file imports nothing of gep_raster.
"""
import json
import logging
import sys
import time


def main(path):
    spec = json.load(open(path))
    import natcap.invest
    if spec["model"] == "sdr":
        from natcap.invest.sdr import sdr as model
    elif spec["model"] == "carbon":
        from natcap.invest import carbon as model
    elif spec["model"] == "annual_water_yield":
        from natcap.invest import annual_water_yield as model
    else:
        raise SystemExit(f"unknown model {spec['model']!r}")
    logging.basicConfig(level=logging.WARNING)
    problems = model.validate(spec["args"])
    if problems:
        raise SystemExit(f"InVEST {spec['model']} refused its arguments: {problems}")
    t0 = time.perf_counter()
    model.execute(spec["args"])
    print(json.dumps({"model": spec["model"], "wall_s": round(time.perf_counter() - t0, 3),
                      "natcap_invest": natcap.invest.__version__}))


if __name__ == "__main__":
    main(sys.argv[1])
