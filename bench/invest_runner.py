"""Run one InVEST model from a JSON file of arguments, in the InVEST peer's Python.

``<peer>/bin/python bench/invest_runner.py args.json`` where args.json is
``{"model": "sdr" | "carbon" | "annual_water_yield", "args": {...InVEST args...}}``, or
``{"models": [{"model": ..., "args": ...}, ...]}`` to run several models one after the other in this one process
(the peer benchmark, ``bench/bench_invest.py``). Prints the wall time (of all models) and the natcap.invest
version as one JSON line. The peer is built by ../shared/tools/invest-peer/setup.sh
(natcap.invest 3.20.2 from its PyPI sdist); this file imports nothing of gep_raster.
"""
import json
import logging
import sys
import time


def _model(name):
    if name == "sdr":
        from natcap.invest.sdr import sdr as model
    elif name == "carbon":
        from natcap.invest import carbon as model
    elif name == "annual_water_yield":
        from natcap.invest import annual_water_yield as model
    else:
        raise SystemExit(f"unknown model {name!r}")
    return model


def main(path):
    spec = json.load(open(path))
    import natcap.invest
    runs = spec["models"] if "models" in spec else [spec]
    models = [(_model(r["model"]), r) for r in runs]
    logging.basicConfig(level=logging.WARNING)
    for model, r in models:
        problems = model.validate(r["args"])
        if problems:
            raise SystemExit(f"InVEST {r['model']} refused its arguments: {problems}")
    t0 = time.perf_counter()
    for model, r in models:
        model.execute(r["args"])
    print(json.dumps({"model": "+".join(r["model"] for r in runs), "wall_s": round(time.perf_counter() - t0, 3),
                      "natcap_invest": natcap.invest.__version__}))


if __name__ == "__main__":
    main(sys.argv[1])
