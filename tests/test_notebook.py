"""The tutorial notebook runs from top to bottom (executed here, so that it never rots)."""
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "lesson.ipynb"


def test_the_lesson_notebook_executes():
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    outputs = "".join(o.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                      for o in cell.get("outputs", []))
    assert "the lesson's network: 13002 parameters" in outputs
    assert "largest difference:" in outputs and "test accuracy after 15 epochs" in outputs
    assert "random labels: train accuracy" in outputs
