"""Sites as users write them: c.HPCSites.sites in Python or JSON config, checked when read."""

from __future__ import annotations

import json

import pytest
from traitlets.config import Config, JSONFileConfigLoader

from jupyter_hpc.sites import HPCSites, SiteConfigError

CORI = {
    "display_name": "Cori",
    "host": "cori.example.org",
    "port": 2222,
    "username": "alice",
    "client_keys": ["~/.ssh/nersc"],
    "remote_python": "/usr/bin/python3",
    "roots": {"home": "~", "scratch": "$SCRATCH"},
    "targets": {
        "login": {"display_name": "login"},
        "knl": {"display_name": "KNL node", "provisioner": "hpc-slurm", "partition": "regular", "time": "00:30:00"},
    },
}


def test_json_config_gives_sites_targets_and_the_provisioner_config(tmp_path):
    path = tmp_path / "jupyter_server_config.json"
    path.write_text(json.dumps({"HPCSites": {"sites": {"cori": CORI}}}))
    config = JSONFileConfigLoader(path.name, str(tmp_path)).load_config()
    site = HPCSites(config=config).site("cori")
    assert site.display_name == "Cori"
    assert dict(site.roots) == {"home": "~", "scratch": "$SCRATCH"}
    assert [(t.name, t.provisioner, t.display_name) for t in site.targets.values()] == [
        ("login", "hpc-ssh", "login"), ("knl", "hpc-slurm", "KNL node"),
    ]
    assert site.provisioner_config("knl") == {
        "host": "cori.example.org", "port": 2222, "username": "alice", "client_keys": ["~/.ssh/nersc"],
        "remote_python": "/usr/bin/python3", "partition": "regular", "time": "00:30:00",
    }
    target = site.ssh_target()
    assert (target.host, target.port, target.username, target.client_keys) == (
        "cori.example.org", 2222, "alice", ("~/.ssh/nersc",))


def test_defaults_one_login_target_and_the_home_root():
    site = HPCSites(sites={"perlmutter": {"host": "perlmutter.example.org"}}).default_site()
    assert site.display_name == "Perlmutter"
    assert list(site.targets) == ["login"] and site.targets["login"].provisioner == "hpc-ssh"
    assert dict(site.roots) == {"home": "~"}
    assert site.remote_python == "python3"


@pytest.mark.parametrize(
    ("sites", "named"),
    [
        ({"cori": {"host": "h", "usrname": "alice"}}, ["'usrname'", "site 'cori'", "username"]),
        ({"cori": {"host": "h", "targets": {"knl": {"provisioner": "hpc-slurm", "partiton": "x"}}}},
         ["'partiton'", "target 'knl'", "partition"]),
        ({"cori": {"host": "h", "targets": {"knl": {"provisioner": "pbs"}}}}, ["'pbs'", "hpc-slurm"]),
        ({"cori": {"host": "h", "port": 70000}}, ["'port'", "65535"]),
        ({"cori": {"port": 22}}, ["no 'host'"]),
        ({"Cori; rm -rf ~": {"host": "h"}}, ["not usable"]),
        ({"cori": {"host": "h", "roots": {"../up": "/"}}}, ["'roots'"]),
    ],
)
def test_a_mistake_is_an_error_naming_it_and_what_is_known(sites, named):
    with pytest.raises(SiteConfigError) as error:
        HPCSites(sites=sites)
    for text in named:
        assert text in str(error.value)


def test_lookups_name_the_known_sites():
    sites = HPCSites(sites={"cori": {"host": "a"}, "edison": {"host": "b"}})
    with pytest.raises(SiteConfigError, match="Configured sites: cori, edison"):
        sites.site("hopper")
    with pytest.raises(SiteConfigError, match="several"):
        sites.default_site()
    with pytest.raises(SiteConfigError, match="no target 'gpu'"):
        sites.site("cori").provisioner_config("gpu")
    assert HPCSites(config=Config()).names() == []
