"""cluster.yaml passes Ray's own cluster-launcher validation (without starting Ray).

``ray up`` runs ``prepare_config`` (merge the local provider's defaults, turn
``head_ip``/``worker_ips`` into the single local node type) and then
``validate_config`` (Ray's JSON schema plus its cross-field checks). We run the
same two steps on the file as shipped.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.local.config import LOCAL_CLUSTER_NODE_TYPE
from ray.autoscaler._private.util import prepare_config, validate_config, with_head_node_ip

CLUSTER_YAML = Path(__file__).resolve().parents[2] / "cluster.yaml"


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    with CLUSTER_YAML.open(encoding="utf-8") as f:
        loaded = yaml.safe_load(f)
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def prepared(raw: dict[str, Any]) -> dict[str, Any]:
    config = prepare_config(copy.deepcopy(raw))
    validate_config(config)
    return config


def _all_commands(config: dict[str, Any]) -> list[str]:
    keys = ("setup_commands", "head_start_ray_commands", "worker_start_ray_commands")
    return [cmd for key in keys for cmd in config[key]]


def test_ray_validates_it(prepared: dict[str, Any]) -> None:
    assert prepared["provider"]["type"] == "local"
    assert prepared["head_node_type"] == LOCAL_CLUSTER_NODE_TYPE


def test_worker_counts_match_the_worker_list(raw: dict[str, Any], prepared: dict[str, Any]) -> None:
    n_workers = len(raw["provider"]["worker_ips"])
    assert n_workers >= 1
    assert raw["min_workers"] == raw["max_workers"] == n_workers
    node_type = prepared["available_node_types"][LOCAL_CLUSTER_NODE_TYPE]
    assert node_type["min_workers"] == node_type["max_workers"] == n_workers


def test_placeholders_are_marked() -> None:
    lines = CLUSTER_YAML.read_text(encoding="utf-8").splitlines()

    def marked(key: str) -> bool:
        return any(key in line and "<-- REPLACE" in line for line in lines)

    for key in ("head_ip:", "worker_ips:", "ssh_user:"):
        assert marked(key), key
    ip_lines = [line for line in lines if re.search(r'^\s*-\s*"?\d+\.\d+\.\d+\.\d+', line)]
    assert ip_lines
    assert all("<-- REPLACE" in line for line in ip_lines)


def test_placeholder_addresses_are_private(raw: dict[str, Any]) -> None:
    provider = raw["provider"]
    ips = [provider["head_ip"], *provider["worker_ips"]]
    assert len(set(ips)) == len(ips)
    assert all(isinstance(ip, str) and ip.startswith("192.168.") for ip in ips)


def test_setup_installs_herd(raw: dict[str, Any]) -> None:
    mounts = raw["file_mounts"]
    repo_remote = next(remote for remote, local in mounts.items() if local == ".")
    assert any(
        "pip install" in cmd and cmd.rstrip().endswith(repo_remote) for cmd in raw["setup_commands"]
    )


def test_head_starts_ray_then_deploys(raw: dict[str, Any]) -> None:
    cmds = raw["head_start_ray_commands"]
    assert "ray stop" in cmds[0]
    start = next(i for i, c in enumerate(cmds) if "ray start --head" in c)
    assert "--port=6379" in cmds[start]
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in cmds[start]
    deploy = next(i for i, c in enumerate(cmds) if "herd deploy" in c)
    assert 0 < start < deploy


def test_workers_join_the_head_then_deploy(prepared: dict[str, Any]) -> None:
    cmds = prepared["worker_start_ray_commands"]
    assert "ray stop" in cmds[0]
    start = next(i for i, c in enumerate(cmds) if "ray start --address=$RAY_HEAD_IP:6379" in c)
    deploy = next(i for i, c in enumerate(cmds) if "herd deploy" in c)
    assert 0 < start < deploy
    # The launcher substitutes the head's address the way it does for real workers.
    with_ip = with_head_node_ip(cmds, prepared["provider"]["head_ip"])
    assert any(f"RAY_HEAD_IP={prepared['provider']['head_ip']}" in c for c in with_ip)


def test_every_process_gets_token_auth(raw: dict[str, Any]) -> None:
    assert raw["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    env_writer = next(c for c in raw["setup_commands"] if "herd-env.sh" in c)
    assert "RAY_AUTH_MODE=token" in env_writer
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        for cmd in raw[key]:
            assert cmd.startswith(". ~/herd-env.sh;"), cmd


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_commands_are_valid_bash(prepared: dict[str, Any]) -> None:
    for cmd in _all_commands(prepared):
        result = subprocess.run(
            ["bash", "-n", "-c", cmd], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, f"{cmd!r}: {result.stderr}"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda c: c.update(bogus_field=1),
        lambda c: c["auth"].update(ssh_password="x"),
        lambda c: c.update(head_start_ray_commands="herd deploy"),
    ],
    ids=["unknown-top-level-key", "unknown-auth-key", "commands-not-a-list"],
)
def test_validation_catches_mistakes(raw: dict[str, Any], mutate: Any) -> None:
    broken = copy.deepcopy(raw)
    mutate(broken)
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(broken))
