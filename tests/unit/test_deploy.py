"""The deploy manifests parse and carry the fields that matter."""

from __future__ import annotations

from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RAY_PORTS = {6379, 8265, 10001}


def load(name: str) -> dict:
    return yaml.safe_load((DEPLOY / name).read_text())


def containers(pod_template: dict) -> list[dict]:
    return pod_template["spec"]["containers"]


def check_pod(template: dict, *, head: bool) -> None:
    (c,) = containers(template)
    assert c["image"].endswith(":0.1.0") and "curate" in c["image"]
    res = c["resources"]
    assert res["requests"]["cpu"] == res["limits"]["cpu"]
    assert res["requests"]["memory"] == res["limits"]["memory"]
    if head:
        assert {p["containerPort"] for p in c["ports"]} == RAY_PORTS


def test_raycluster():
    doc = load("kuberay/raycluster.yaml")
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayCluster"
    assert doc["spec"]["rayVersion"] == "2.60.0"
    head = doc["spec"]["headGroupSpec"]
    assert head["rayStartParams"]["dashboard-host"] == "0.0.0.0"
    check_pod(head["template"], head=True)
    env = {e["name"]: e["value"] for e in containers(head["template"])[0]["env"]}
    assert env["RAY_AUTH_MODE"] == "token" and env["RAY_AUTH_TOKEN_PATH"].startswith("/etc/")
    (workers,) = doc["spec"]["workerGroupSpecs"]
    assert workers["minReplicas"] <= workers["replicas"] <= workers["maxReplicas"]
    check_pod(workers["template"], head=False)


def test_rayjob_runs_a_recipe():
    doc = load("kuberay/rayjob.yaml")
    assert doc["kind"] == "RayJob"
    entry = doc["spec"]["entrypoint"]
    assert entry.startswith("curate run recipes/") and "--output" in entry
    recipe = entry.split()[2]
    assert (DEPLOY.parent / recipe).is_file()
    assert doc["spec"]["shutdownAfterJobFinishes"] is True
    cluster = doc["spec"]["rayClusterSpec"]
    check_pod(cluster["headGroupSpec"]["template"], head=True)
    check_pod(cluster["workerGroupSpecs"][0]["template"], head=False)


def test_cluster_launcher():
    doc = load("cluster-launcher.yaml")
    assert doc["docker"]["image"].endswith(":0.1.0")
    types = doc["available_node_types"]
    assert doc["head_node_type"] in types
    assert any("--dashboard-port=8265" in c for c in doc["head_start_ray_commands"])
    assert all(t["node_config"]["InstanceType"] for t in types.values())
    assert doc["max_workers"] >= max(t.get("max_workers", 0) for t in types.values())


def test_dockerfile_installs_curate_with_cpu_torch():
    text = (DEPLOY / "Dockerfile").read_text()
    assert text.startswith("#") and "FROM python:3.11" in text
    assert 'torch==2.13.0' in text and "pip install -e ." in text
    assert "EXPOSE 6379 8265 10001" in text
