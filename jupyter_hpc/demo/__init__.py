"""``jupyter hpc demo``: the product working on one machine, with no cluster and no root.

:mod:`.login_node` is an embedded SSH server playing the cluster's login node,
:mod:`.kernelspec` the "Cori (demo)" kernelspec that reaches it, :mod:`.lab` the JupyterLab
child process, :mod:`.processes` the accounting that lets :mod:`.app` stop everything.
"""
