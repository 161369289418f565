"""Cluster configs parse, pass Ray's own launcher validation (its JSON schema), name the fields
KubeRay requires, and never put a dashboard on 0.0.0.0 without saying why."""
import copy
import pathlib
import re

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2] / "cluster"
LAUNCHER = ["local.yaml", "aws.yaml", "gcp.yaml"]
KUBERAY = ["kuberay/raycluster.yaml", "kuberay/rayjob.yaml"]


@pytest.mark.parametrize("name", LAUNCHER)
def test_launcher_configs_pass_rays_schema(name):
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = yaml.safe_load((ROOT / name).read_text())
    validate_config(prepare_config(copy.deepcopy(cfg)))   # `ray up`'s own checks: a missing or misspelt field raises
    starts = " ".join(cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in starts and "0.0.0.0" not in starts
    assert all("RAY_AUTH_MODE=token" in c for c in cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"]
               if "ray st" in c)
    if name != "local.yaml":
        assert cfg["head_node_type"] in cfg["available_node_types"]
        assert any("gpu" in t for t in cfg["available_node_types"])


def test_schema_check_can_fail():
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = yaml.safe_load((ROOT / "aws.yaml").read_text())
    cfg["available_node_types"]["gpu_worker"]["max_worker"] = 2       # typo
    with pytest.raises(jsonschema.ValidationError, match="max_worker"):
        validate_config(prepare_config(cfg))


def _containers(spec):
    return spec["template"]["spec"]["containers"]


@pytest.mark.parametrize("name", KUBERAY)
def test_kuberay_manifests(name):
    text = (ROOT / name).read_text()
    doc = yaml.safe_load(text)
    assert doc["apiVersion"] == "ray.io/v1" and doc["metadata"]["name"]
    if doc["kind"] == "RayJob":
        assert doc["spec"]["entrypoint"].startswith("python jobs/")
        assert pathlib.Path(ROOT.parent, doc["spec"]["entrypoint"].split()[1]).exists()
        cluster = doc["spec"]["rayClusterSpec"]
    else:
        assert doc["kind"] == "RayCluster"
        cluster = doc["spec"]
    assert cluster["authOptions"]["mode"] == "token"
    assert tuple(int(x) for x in cluster["rayVersion"].split(".")) >= (2, 52, 0)
    head = cluster["headGroupSpec"]
    assert head["serviceType"] == "ClusterIP" and _containers(head)[0]["image"]
    for group in cluster["workerGroupSpecs"]:
        assert {"groupName", "replicas", "minReplicas", "maxReplicas", "rayStartParams", "template"} <= set(group)
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        assert "nvidia.com/gpu" in _containers(group)[0]["resources"]["limits"]
    # a dashboard on 0.0.0.0 must come with a comment saying why, just above it
    for m in re.finditer(r"dashboard-host: \"0\.0\.0\.0\"", text):
        before = text[:m.start()].splitlines()[-3:]
        assert any("why" in line for line in before)


@pytest.mark.parametrize("name", ["aws.yaml", "gcp.yaml", "kuberay/raycluster.yaml"])
def test_each_cloud_config_has_preemptible_gpu_workers_the_autoscaler_can_replace(name):
    doc = yaml.safe_load((ROOT / name).read_text())
    if name.startswith("kuberay"):
        assert doc["spec"]["enableInTreeAutoscaling"] is True
        spot = [g for g in doc["spec"]["workerGroupSpecs"] if "spot" in str(g["template"]["spec"].get("nodeSelector"))]
        assert spot and all(g["minReplicas"] == 0 < g["maxReplicas"] for g in spot)
        return
    spot = [t for t in doc["available_node_types"].values()
            if t["node_config"].get("InstanceMarketOptions", {}).get("MarketType") == "spot"
            or {"preemptible": True} in t["node_config"].get("scheduling", [])]
    assert spot and all(t["min_workers"] == 0 < t["max_workers"] <= doc["max_workers"] for t in spot)
