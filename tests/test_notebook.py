"""The quickstart notebook runs end to end on the sample (executed with nbclient)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quickstart_notebook_executes(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(REPO / "notebooks/quickstart.ipynb", as_version=4)
    monkeypatch.setenv("GEP_NOTEBOOK_OUT", str(tmp_path / "nb_out"))
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(REPO / "notebooks")}})
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert (tmp_path / "nb_out" / "figures" / "gep_r_map.png").exists()
    assert any("image/png" in o.get("data", {}) for o in outputs)
