"""deploy/k8s and the Dockerfile, checked offline.

The manifests are validated against the Kubernetes OpenAPI schemas bundled in the
`kubernetes-validate` package (strict: unknown fields are errors), and cross-checked with each
other, with the server's flags and with the Dockerfile. No cluster and no container engine.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from greet.server.config import build_parser, env_name, parse_config

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSIONS = ["1.27.0", "1.37.0"]  # gRPC probes are GA since 1.27
Manifest = dict[str, Any]


def manifests() -> list[Manifest]:
    docs: list[Manifest] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return docs


def one(kind: str, name: str | None = None) -> Manifest:
    found = [
        doc
        for doc in manifests()
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}"
    return found[0]


def greet_container() -> Manifest:
    containers = one("Deployment")["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "greet")


def container_env() -> dict[str, str]:
    return {item["name"]: item["value"] for item in greet_container()["env"]}


def dockerfile_instructions() -> Iterator[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    logical = ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.strip().startswith("#") and not logical:
            continue
        logical += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            if logical.strip():
                instruction, _, arguments = logical.strip().partition(" ")
                yield instruction.upper(), arguments.strip()
            logical = ""


def final_stage() -> list[tuple[str, str]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction, arguments in dockerfile_instructions():
        if instruction == "FROM":
            stages.append([])
        stages[-1].append((instruction, arguments))
    return stages[-1]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_matches_the_kubernetes_schema(version: str) -> None:
    docs = manifests()
    assert {doc["kind"] for doc in docs} >= {"Deployment", "Service", "PodDisruptionBudget"}
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_validation_catches_a_mistake() -> None:
    broken = copy.deepcopy(one("Deployment"))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpcc"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == on_disk


def test_probes_use_grpc_health_on_the_serving_port() -> None:
    container = greet_container()
    grpc_port = next(p["containerPort"] for p in container["ports"] if p["name"] == "grpc")
    assert int(container_env()["GREET_PORT"]) == grpc_port
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == grpc_port, probe
        assert container[probe]["grpc"].get("service", "") == ""  # the whole server


def test_the_environment_names_real_flags_and_parses() -> None:
    flags = {env_name(flag) for action in build_parser()._actions for flag in action.option_strings}
    env = container_env()
    assert set(env) <= flags
    config = parse_config(["--host", "0.0.0.0"], environ=env)
    assert config.port == 8080
    assert config.metrics_port == next(
        p["containerPort"] for p in greet_container()["ports"] if p["name"] == "metrics"
    )


def test_termination_grace_outlasts_prestop_and_drain() -> None:
    pod = one("Deployment")["spec"]["template"]["spec"]
    grace = parse_config([], environ=container_env()).grace
    command = greet_container()["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] > float(command[1]) + grace


def test_pods_run_as_the_images_unprivileged_user_with_limits() -> None:
    pod = one("Deployment")["spec"]["template"]["spec"]
    container = greet_container()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert set(container["resources"]["limits"]) >= {"cpu", "memory"}
    user = dict(final_stage())["USER"]
    assert user.split(":")[0] == str(pod["securityContext"]["runAsUser"])


def test_services_reach_the_deployments_pods() -> None:
    deployment = one("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    port_names = {p["name"] for p in greet_container()["ports"]}
    for name in ("greet", "greet-headless"):
        service = one("Service", name)
        assert service["spec"]["selector"].items() <= labels.items()
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names
    assert one("Service", "greet-headless")["spec"]["clusterIP"] == "None"
    assert "clusterIP" not in one("Service", "greet")["spec"]
    budget = one("PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert budget["spec"]["minAvailable"] < deployment["spec"]["replicas"]


def test_dockerfile_runs_the_server_as_non_root_on_a_slim_python() -> None:
    stage = final_stage()
    instructions = dict(stage)
    assert instructions["FROM"].startswith("python:3.11-slim")
    user = instructions["USER"].split(":")[0]
    assert user not in ("root", "0")
    runs = " ".join(arguments for instruction, arguments in stage if instruction == "RUN")
    assert f"useradd --system --uid {user}" in runs
    assert json.loads(instructions["CMD"]) == ["python", "-m", "greet.server", "--host", "0.0.0.0"]
    assert instructions["EXPOSE"] == str(greet_container()["ports"][0]["containerPort"])
    assert one("Deployment")["spec"]["template"]["spec"]["containers"][0]["image"].startswith(
        "greet:"
    )


def test_docker_build_context_holds_what_the_wheel_needs() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()  # (tomllib is Python 3.11+)
    readme = re.search(r'^readme = "([^"]+)"', pyproject, re.MULTILINE)
    wheel = re.search(
        r"^\[tool\.hatch\.build\.targets\.wheel\]\npackages = (\[.*\])", pyproject, re.M
    )
    assert readme is not None
    assert wheel is not None
    needed = {"pyproject.toml", readme.group(1), *json.loads(wheel.group(1))}
    copied: set[str] = set()
    for instruction, arguments in dockerfile_instructions():
        if instruction == "COPY" and not arguments.startswith("--from"):
            copied.update(arguments.split()[:-1])
    assert needed <= copied
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert not needed & ignored
    assert {".git", ".nox", "tests"} <= ignored
