"""Issue 17 in the browser: a real JupyterLab with SFTPContentsManager, in Debian's headless
Chromium, shows the cluster's files, not the server host's.

The site has two roots, home and ``$SCRATCH``, on this bed's own sshd for ``hpcfiles``. Every
change made with clicks and keys in the file browser and the notebook is checked on the
"cluster", read as the remote user (``FilesUser.run``), and the server host's own root dir
is checked to have received nothing. The notebook's kernel (a kernelspec in the remote home)
starts in the notebook's folder on the cluster.
"""

from __future__ import annotations

import json

import pytest

from contents_bed import FilesUser, files_sshd, files_user, site_config  # noqa: F401 (fixtures)
from lab_browser import (  # noqa: F401 (browser is a fixture)
    Lab, browser, close_page, lab_config, open_lab, remove_remote_kernels, run_cell,
    screenshot, write_remote_kernel,
)

pytestmark = pytest.mark.browser
KERNEL = "Files: Cluster Python (login)"


@pytest.fixture(scope="module")
def lab(tmp_path_factory, files_sshd, files_user: FilesUser, remote_python):
    write_remote_kernel(files_user.entry, "clusterpy", "Cluster Python", remote_python, env_line=":")
    site = {"display_name": "Files", **site_config(files_sshd, files_user), "remote_python": remote_python}
    config = lab_config({"files": site}, sftp=True)
    try:
        with Lab.running(tmp_path_factory.mktemp("lab-contents"), config) as lab:
            yield lab
    finally:
        remove_remote_kernels(files_user.entry)


@pytest.fixture
def home_folder(files_user: FilesUser):
    path = files_user.folder(files_user.home)
    yield path
    files_user.run("rm", "-rf", str(path))


def on_cluster(user: FilesUser, folder) -> set[str]:
    """The names in ``folder`` on the cluster, as the remote user's ``ls -A`` shows them."""
    return set(user.run("ls", "-A", str(folder)).stdout.decode().split("\n")) - {""}


def item(page, name: str):
    """The file browser's row for ``name`` in the folder it shows."""
    return page.locator(".jp-FileBrowser .jp-DirListing-item").filter(
        has=page.locator(".jp-DirListing-itemText").get_by_text(name, exact=True))


def open_folder(page, name: str) -> None:
    item(page, name).dblclick()
    page.locator(".jp-FileBrowser .jp-BreadCrumbs", has_text=name).wait_for()


def shown_names(page) -> set[str]:
    return set(page.locator(".jp-FileBrowser .jp-DirListing-item .jp-DirListing-itemText").all_inner_texts())


def rename_in_editor(page, new_name: str) -> None:
    editor = page.locator(".jp-FileBrowser .jp-DirListing-editor")
    editor.wait_for()
    editor.fill(new_name)
    editor.press("Enter")


def test_file_browser_works_on_the_cluster(lab, browser, artifacts, files_user: FilesUser, home_folder):
    files_user.write(home_folder / "results.txt", "from the cluster\n")
    page = open_lab(browser, lab)
    try:
        # The top level: one folder per root; no file of the server host's root dir.
        item(page, "home").wait_for()
        item(page, "scratch").wait_for()
        assert shown_names(page) == {"home", "scratch"}
        screenshot(page, artifacts, "contents-top-level")

        # "scratch" is a click away, and shows what is in $SCRATCH on the cluster.
        marker = files_user.folder(files_user.scratch)
        try:
            open_folder(page, "scratch")
            item(page, marker.name).wait_for()
            screenshot(page, artifacts, "contents-scratch")
        finally:
            files_user.run("rm", "-rf", str(marker))
        page.locator(".jp-FileBrowser .jp-BreadCrumbs-home").click()
        item(page, "home").wait_for()

        # The remote home, listed; then the test's folder in it.
        open_folder(page, "home")
        item(page, home_folder.name).wait_for()
        screenshot(page, artifacts, "contents-remote-home")
        open_folder(page, home_folder.name)
        item(page, "results.txt").wait_for()

        # A new folder, named in the browser: it exists on the cluster.
        page.locator(".jp-FileBrowser [data-command='filebrowser:create-new-directory']").click()
        rename_in_editor(page, "analysis")
        item(page, "analysis").wait_for()
        assert (files_user.run("stat", "-c", "%F %U", str(home_folder / "analysis")).stdout.decode().strip()
                == f"directory {files_user.name}")
        open_folder(page, "analysis")

        # A new notebook from the launcher, in that folder; its kernel runs on the cluster there.
        page.locator(".jp-FileBrowser [data-command='launcher:create']").click()
        tile = page.locator(".jp-LauncherCard[data-category='Notebook']", has_text=KERNEL).locator("visible=true")
        tile.wait_for()
        tile.click()
        item(page, "Untitled.ipynb").wait_for()
        page.locator(".jp-StatusBar-Widget", has_text=f"{KERNEL} | Idle").wait_for(timeout=120_000)
        where = run_cell(page, "import os; print('cwd', os.getcwd())", "cwd ")
        assert where.split() == ["cwd", str(home_folder / "analysis")], where

        # Edit, save (Ctrl+S; JupyterLab asks for a name at the first save): the cluster has it.
        folder = home_folder / "analysis"
        cell = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell .cm-content").last
        cell.click()
        page.keyboard.type("total = 6 * 7  # edited in the browser")
        page.keyboard.press("Control+s")
        name_it = page.locator(".jp-Dialog input[type=text]")
        name_it.wait_for()
        name_it.fill("draft.ipynb")
        page.locator(".jp-Dialog .jp-mod-accept").click()
        page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text="draft.ipynb").wait_for()
        page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.jp-mod-dirty").wait_for(state="detached")
        item(page, "draft.ipynb").wait_for()
        assert "Untitled.ipynb" not in on_cluster(files_user, folder)
        notebook = folder / "draft.ipynb"
        cells = json.loads(files_user.read(notebook))["cells"]
        assert ["".join(c["source"]) for c in cells] == ["import os; print('cwd', os.getcwd())",
                                                "total = 6 * 7  # edited in the browser"]
        assert "".join(cells[0]["outputs"][0]["text"]) == f"cwd {folder}\n"
        # Its checkpoint is on the cluster too, beside it.
        assert "draft-checkpoint.ipynb" in on_cluster(files_user, folder / ".ipynb_checkpoints")
        screenshot(page, artifacts, "contents-notebook-saved")

        # Close it, then rename it in the file browser: renamed on the cluster.
        page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text="draft.ipynb").locator(
            ".lm-TabBar-tabCloseIcon").click()
        page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text="draft.ipynb").wait_for(state="detached")
        item(page, "draft.ipynb").click(button="right")
        page.locator(".lm-Menu-item[data-command='filebrowser:rename']").click()
        rename_in_editor(page, "model.ipynb")
        item(page, "model.ipynb").wait_for()
        shown = on_cluster(files_user, folder)
        assert "model.ipynb" in shown and "draft.ipynb" not in shown, shown
        assert "edited in the browser" in files_user.read(folder / "model.ipynb").decode()
        screenshot(page, artifacts, "contents-renamed")

        # Delete it: gone from the cluster.
        item(page, "model.ipynb").click(button="right")
        page.locator(".lm-Menu-item[data-command='filebrowser:delete']").click()
        page.locator(".jp-Dialog .jp-mod-accept").click()
        item(page, "model.ipynb").wait_for(state="detached")
        assert "model.ipynb" not in on_cluster(files_user, folder)
        screenshot(page, artifacts, "contents-deleted")

        # Nothing of it landed on the server host.
        assert not any(lab.root_dir.iterdir()), list(lab.root_dir.iterdir())
    except BaseException:
        screenshot(page, artifacts, "contents-failed")
        raise
    finally:
        close_page(page)
