"""The paper notebooks run end to end in their quick mode, and match their builder."""

import importlib.util
import json
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"


def _builder():
    spec = importlib.util.spec_from_file_location("build_notebooks", NB_DIR / "build_notebooks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


NOTEBOOKS = sorted(_builder().NOTEBOOKS)


def test_notebooks_match_their_builder():
    b = _builder()
    for name, cells in b.NOTEBOOKS.items():
        on_disk = json.loads((NB_DIR / name).read_text())
        assert on_disk == b.notebook(cells), (
            f"{name} is stale: run python notebooks/build_notebooks.py"
        )


# each notebook trains a tiny model and compiles its analyses: a minute or more on 2 CPU cores
@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_quick_mode_runs(name):
    import matplotlib.pyplot as plt

    nb = json.loads((NB_DIR / name).read_text())
    code = [("".join(c["source"])) for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and code[0].lstrip().startswith("QUICK = True"), "quick mode must be the default"
    ns = {"__name__": "__notebook__"}
    for i, src in enumerate(code):
        try:
            exec(compile(src, f"{name}[cell {i}]", "exec"), ns)
        except Exception as e:  # name the failing cell
            raise AssertionError(f"{name}: code cell {i} failed: {type(e).__name__}: {e}") from e
    assert plt.get_fignums(), f"{name} drew no figure"
    plt.close("all")
