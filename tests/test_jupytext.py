"""The notebooks open and save in JupyterLab without a change: Jupytext's contents manager (what
JupyterLab uses to open a ``.py`` notebook) reads each one, the notebook gets what a JupyterLab
session adds (the running kernel's spec, ``language_info``, cell view state), and saving it
writes back the same bytes, under the project's ``[tool.jupytext]`` configuration."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")
from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupytext import TextFileContentsManager  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))


@pytest.fixture(scope="module")
def manager(tmp_path_factory) -> TextFileContentsManager:
    """A contents manager over a copy of the notebooks, under the project's pyproject.toml."""
    root = tmp_path_factory.mktemp("lab")
    shutil.copy(ROOT / "pyproject.toml", root)
    shutil.copytree(ROOT / "notebooks", root / "notebooks")
    return TextFileContentsManager(root_dir=str(root))


def test_every_notebook_is_found():
    assert [p.stem[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05", "06"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_open_and_save_in_jupyterlab_leaves_the_file_byte_identical(manager, path):
    name = f"notebooks/{path.name}"
    model = manager.get(name)
    assert model["type"] == "notebook"
    notebook = model["content"]
    assert notebook.cells[0].cell_type == "markdown"
    spec = KernelSpecManager().get_kernel_spec("python3")
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": spec.display_name,
                                       "language": spec.language}
    notebook.metadata["language_info"] = {"name": "python", "version": "3.11.9"}
    for cell in notebook.cells:
        cell.metadata["jupyter"] = {"source_hidden": False}
        if cell.cell_type == "code":
            cell.metadata["scrolled"] = True
    manager.save(model, name)
    saved = Path(manager.root_dir, name).read_bytes()
    assert saved == path.read_bytes()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_notebook_keeps_one_parameters_cell(path):
    notebook = jupytext.read(path)
    tagged = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0].cell_type == "code"


def test_a_kernel_installed_by_path_is_given_to_every_opened_notebook(manager, tmp_path,
                                                                     monkeypatch):
    """run_all.sh installs the environment's kernel with its interpreter's full path
    (``ipykernel install --sys-prefix``): Jupytext's contents manager then sets that kernel on
    each notebook it opens, so JupyterLab does not ask which one, and saving keeps the bytes.
    ipykernel's bundled spec names ``python``, which Jupytext cannot match to the server's."""
    import sys

    kernelspec = pytest.importorskip("ipykernel.kernelspec")
    kernels = tmp_path / "kernels"
    kernelspec.write_kernel_spec(kernels / "python3")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    assert KernelSpecManager().get_kernel_spec("python3").argv[0] == sys.executable
    name = f"notebooks/{NOTEBOOKS[0].name}"
    model = manager.get(name)
    assert model["content"].metadata["kernelspec"]["name"] == "python3"
    manager.save(model, name)
    assert Path(manager.root_dir, name).read_bytes() == NOTEBOOKS[0].read_bytes()
