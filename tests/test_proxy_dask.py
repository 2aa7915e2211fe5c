"""Dask on SLURM from a notebook, end to end, in a real JupyterLab in Debian's headless Chromium.

The path a NERSC user takes: a notebook on a SLURM target ("Cori: Dask (KNL node)", a kernel
in a job), ``dask_jobqueue.SLURMCluster`` in a cell, ``cluster.scale(2)`` (two more jobs in the
queue), a sum computed on the workers, then a click on the dashboard link ``client`` shows: it
opens through the cluster proxy (the scheduler is named by its node's default-route address,
which the route allows as the node of the user's kernel), and Bokeh's plots render live
(canvas drawn, Bokeh's websocket connected through the route). Closing the cluster leaves no
worker job. The Cluster sidebar lists the dashboard's port among the kernel's web UIs, with an
Open link that answers. dask, distributed, dask-jobqueue and bokeh are in the cluster-side venv only
(tests/testbed/remote_python.py); the server has none of them.
"""

from __future__ import annotations


import pytest

from lab_browser import (  # noqa: F401 (browser is a fixture)
    Lab, add_slurm_user, browser, cancel_jobs, close_page, cori_with_slurm, lab_config, launcher_tile, open_lab,
    remove_remote_kernels, run_cell, screenshot, squeue, write_remote_kernel,
)
from testbed.sshd import running_sshd
from testbed.users import ensure_user
from testbed.waiting import wait_until

USER = "hpcdask"
TILE = "Cori: Dask (KNL node)"
pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

START_CLUSTER = (
    "from dask_jobqueue import SLURMCluster\n"
    "from dask.distributed import Client\n"
    "cluster = SLURMCluster(queue='debug', cores=1, processes=1, memory='1GB', walltime='00:10:00')\n"
    "cluster.scale(2)\n"
    "client = Client(cluster)\n"
    "client"
)


# Bokeh's documents in the page, and the canvases drawn, however deep in shadow roots.
COUNT_CANVASES = """() => {
  const count = root => [...root.querySelectorAll('*')].reduce(
      (n, e) => n + (e.tagName === 'CANVAS' ? 1 : 0) + (e.shadowRoot ? count(e.shadowRoot) : 0), 0);
  return window.Bokeh && Bokeh.documents.length > 0 ? count(document) : 0;
}"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory, remote_python, slurm):
    user = ensure_user(USER)
    add_slurm_user(USER)
    write_remote_kernel(user, "dask", "Dask", remote_python)
    try:
        with running_sshd([USER], "lab-dask") as sshd:
            site = cori_with_slurm(sshd, USER, remote_python, queue_timeout=120)
            with Lab.running(tmp_path_factory.mktemp("lab-dask"), lab_config({"cori": site})) as lab:
                yield lab
    finally:
        cancel_jobs(USER)
        remove_remote_kernels(user)


def test_dask_on_slurm_from_a_notebook_and_its_dashboard_through_the_proxy(lab, browser, artifacts):
    page = open_lab(browser, lab)
    try:
        launcher_tile(page, TILE).click()
        page.locator(".jp-Dialog .jp-hpc-ResourceForm").wait_for()
        page.locator(".jp-Dialog .jp-mod-accept").click()
        page.locator(".jp-StatusBar-Widget", has_text=f"{TILE} | Idle").wait_for(timeout=180_000)
        [kernel_job] = squeue(USER)

        run_cell(page, START_CLUSTER, "Dashboard", timeout=180_000)
        jobs = wait_until(lambda: len(squeue(USER)) == 3 and squeue(USER), "two worker jobs in squeue", timeout=120)
        workers = [job for job in jobs if job["id"] != kernel_job["id"]]
        assert len(workers) == 2, jobs
        run_cell(page, "client.wait_for_workers(1, timeout=240)\nprint('sum', client.submit(sum, range(101)).result())",
                 "sum 5050", timeout=300_000)

        link = page.locator(".jp-OutputArea-output a[href*='/jupyter-hpc/proxy/cori/']").first
        href = link.get_attribute("href")
        assert href.startswith("/jupyter-hpc/proxy/cori/") and href.endswith("/status"), href
        screenshot(page, artifacts, "proxy-dask-notebook")

        # The Cluster sidebar lists the dashboard's port among the kernel's web UIs, with Open.
        port = href.split("/")[-2].rsplit(":", 1)[1]
        page.locator(".jp-SideBar [data-id='jupyter-hpc-cluster']").click()
        sidebar_open = page.locator(f".jp-hpc-WebUIs li[data-port='{port}'] a.jp-hpc-WebUIs-open")
        sidebar_open.wait_for(timeout=60_000)
        sidebar_href = sidebar_open.get_attribute("href")
        assert sidebar_href.startswith("/jupyter-hpc/proxy/cori/") and sidebar_href.endswith(f":{port}/"), sidebar_href
        assert "bokeh" in page.request.get(lab.base + sidebar_href).text().lower()
        screenshot(page, artifacts, "proxy-dask-sidebar")
        sockets = []
        with page.context.expect_page() as opened:
            link.click()
        dashboard = opened.value
        dashboard.on("websocket", lambda ws: sockets.append(ws))
        dashboard.set_default_timeout(120_000)
        dashboard.wait_for_load_state()
        assert href in dashboard.url
        # Bokeh draws its plots on canvases (inside nested shadow roots), fed over its websocket.
        canvases = dashboard.wait_for_function(COUNT_CANVASES).json_value()
        assert canvases > 0
        wait_until(lambda: [ws for ws in sockets if "/jupyter-hpc/proxy/cori/" in ws.url and not ws.is_closed()],
                   "Bokeh's websocket through the route", timeout=60)
        dashboard.wait_for_timeout(2000)  # a few live updates drawn
        screenshot(dashboard, artifacts, "proxy-dask-dashboard")
        dashboard.close()

        run_cell(page, "cluster.close(); client.close(); print('closed')", "closed", timeout=120_000)
        wait_until(lambda: [job["id"] for job in squeue(USER)] == [kernel_job["id"]], "the worker jobs gone", timeout=90)
    finally:
        close_page(page)
        for kernel_id in lab.kernel_ids():
            lab.api("DELETE", f"kernels/{kernel_id}")
        wait_until(lambda: not lab.kernel_ids(), "the kernel gone from the server", timeout=60)
        cancel_jobs(USER)
