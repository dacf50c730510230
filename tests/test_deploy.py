"""deploy/k8s, the Dockerfile and constraints.txt, checked offline.

The manifests are rendered as `kubectl apply -k` would (the base, and overlays/production with
its TLS, token and monitoring components) by a small kustomize stand-in that refuses any
kustomization feature it does not implement, then validated against the Kubernetes OpenAPI
schemas bundled in `kubernetes-validate` (strict: unknown fields are errors) and, for
prometheus-operator's ServiceMonitor (a CRD, which kubernetes-validate lacks), against a schema
written here from the CRD. They are cross-checked with each other, with the server's flags and
with the Dockerfile. No cluster and no container engine.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from constraints_lock import dependencies_digest, lock_problems, pinned_versions, render
from server_process import ServerProcess

from greet.client import GreetClient
from greet.server.config import build_parser, env_name, parse_config

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
BASE = K8S / "base"
PRODUCTION = K8S / "overlays" / "production"
KUBERNETES_VERSIONS = ["1.27.0", "1.37.0"]  # gRPC probes are GA since 1.27
Manifest = dict[str, Any]


# --- rendering: a kustomize stand-in for the features deploy/k8s uses ---------------------------

KUSTOMIZATION_KEYS = {"apiVersion", "kind", "resources", "components", "patches"}


def yaml_documents(path: Path) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def kustomization(directory: Path) -> Manifest:
    spec: Manifest = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(spec) - KUSTOMIZATION_KEYS
    assert not unknown, f"{directory}: this test's kustomize stand-in does not implement {unknown}"
    return spec


def pointer(path: str) -> list[str]:
    """An RFC 6901 JSON pointer, split into unescaped tokens."""
    assert path.startswith("/"), path
    return [token.replace("~1", "/").replace("~0", "~") for token in path[1:].split("/")]


def apply_json_patch(doc: Manifest, operations: list[Manifest]) -> None:
    """RFC 6902 add, remove, replace and test, in place (all that kustomize patches here use)."""
    for operation in operations:
        *parents, last = pointer(operation["path"])
        node: Any = doc
        for token in parents:
            node = node[int(token)] if isinstance(node, list) else node[token]
        op = operation["op"]
        if isinstance(node, list):
            index = len(node) if last == "-" else int(last)
            if op == "add":
                node.insert(index, copy.deepcopy(operation["value"]))
                continue
            assert 0 <= index < len(node), operation
        elif op != "add":
            assert last in node, f"{operation}: no such member"
        if op in ("add", "replace"):
            node[index if isinstance(node, list) else last] = copy.deepcopy(operation["value"])
        elif op == "remove":
            del node[index if isinstance(node, list) else last]
        elif op == "test":
            assert node[index if isinstance(node, list) else last] == operation["value"], operation
        else:
            raise AssertionError(f"unsupported JSON patch operation {op!r}")


def apply_patches(directory: Path, spec: Manifest, docs: list[Manifest]) -> None:
    for patch in spec.get("patches", []):
        assert set(patch) == {"path", "target"}, f"{directory}: only JSON patches with a target"
        assert set(patch["target"]) <= {"kind", "name"}, patch
        targets = [
            doc
            for doc in docs
            if all(
                (doc["kind"] if key == "kind" else doc["metadata"]["name"]) == value
                for key, value in patch["target"].items()
            )
        ]
        assert targets, f"{directory}: patch {patch['path']} matches nothing"
        operations = yaml.safe_load((directory / patch["path"]).read_text())
        for doc in targets:
            apply_json_patch(doc, operations)


def kustomize(directory: Path) -> list[Manifest]:
    """What `kubectl kustomize directory` prints, as documents."""
    spec = kustomization(directory)
    assert spec["kind"] == "Kustomization", directory
    docs: list[Manifest] = []
    for entry in spec.get("resources", []):
        path = directory / entry
        docs.extend(kustomize(path) if path.is_dir() else yaml_documents(path))
    for entry in spec.get("components", []):
        component_dir = directory / entry
        component = kustomization(component_dir)
        assert component["kind"] == "Component", component_dir
        for resource in component.get("resources", []):
            docs.extend(yaml_documents(component_dir / resource))
        apply_patches(component_dir, component, docs)
    apply_patches(directory, spec, docs)
    return docs


VARIANTS = {"base": K8S, "production": PRODUCTION}


def manifests(variant: str = "base") -> list[Manifest]:
    return kustomize(VARIANTS[variant])


def one(kind: str, name: str | None = None, variant: str = "base") -> Manifest:
    found = [
        doc
        for doc in manifests(variant)
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}"
    return found[0]


def pod_spec(variant: str = "base") -> Manifest:
    spec: Manifest = one("Deployment", variant=variant)["spec"]["template"]["spec"]
    return spec


def greet_container(variant: str = "base") -> Manifest:
    return next(c for c in pod_spec(variant)["containers"] if c["name"] == "greet")


def container_env(variant: str = "base") -> dict[str, str]:
    return {item["name"]: item["value"] for item in greet_container(variant)["env"]}


def container_port(name: str) -> int:
    port: int = next(p["containerPort"] for p in greet_container()["ports"] if p["name"] == name)
    return port


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


# --- the ServiceMonitor's schema --------------------------------------------------------------

DURATION = (
    r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
)
LABEL_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
        "matchExpressions": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["key", "operator"],
                "properties": {
                    "key": {"type": "string"},
                    "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                    "values": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}
RELABELING = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "action": {"type": "string"},
        "modulus": {"type": "integer"},
        "regex": {"type": "string"},
        "replacement": {"type": "string"},
        "separator": {"type": "string"},
        "sourceLabels": {"type": "array", "items": {"type": "string"}},
        "targetLabel": {"type": "string"},
    },
}
SERVICE_MONITOR_SCHEMA = {
    # monitoring.coreos.com/v1 ServiceMonitor: the fields of prometheus-operator's CRD
    # (monitoring.coreos.com_servicemonitors.yaml, operator 0.84) that a greet manifest may use,
    # with their types, patterns and required fields; unknown fields are errors, as with
    # `kubectl apply --validate=strict`.
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                "namespace": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["endpoints", "selector"],
            "properties": {
                "selector": LABEL_SELECTOR,
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "jobLabel": {"type": "string"},
                "targetLabels": {"type": "array", "items": {"type": "string"}},
                "podTargetLabels": {"type": "array", "items": {"type": "string"}},
                "sampleLimit": {"type": "integer"},
                "endpoints": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "targetPort": {"type": ["integer", "string"]},
                            "path": {"type": "string"},
                            "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
                            "interval": {"type": "string", "pattern": DURATION},
                            "scrapeTimeout": {"type": "string", "pattern": DURATION},
                            "honorLabels": {"type": "boolean"},
                            "relabelings": {"type": "array", "items": RELABELING},
                            "metricRelabelings": {"type": "array", "items": RELABELING},
                        },
                    },
                },
            },
        },
    },
}


def validate(doc: Manifest, version: str) -> None:
    if doc["apiVersion"].startswith("monitoring.coreos.com/"):
        jsonschema.validate(doc, SERVICE_MONITOR_SCHEMA)
    else:
        kubernetes_validate.validate(doc, version, strict=True)


# --- the Dockerfile ---------------------------------------------------------------------------


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


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for instruction, arguments in dockerfile_instructions():
        if instruction == "FROM":
            found.append([])
        found[-1].append((instruction, arguments))
    return found


def final_stage() -> list[tuple[str, str]]:
    return stages()[-1]


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, arguments in final_stage():
        if instruction == "ENV":
            for word in shlex.split(arguments):
                name, _, value = word.partition("=")
                env[name] = value
    return env


def image_python() -> str:
    match = re.match(r"python:(\d+\.\d+)", dict(final_stage())["FROM"])
    assert match is not None
    return match.group(1)


# --- the manifests ----------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_matches_its_schema(variant: str, version: str) -> None:
    docs = manifests(variant)
    assert {doc["kind"] for doc in docs} >= {
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
    }
    for doc in docs:
        validate(doc, version)
    if variant == "production":
        assert "ServiceMonitor" in {doc["kind"] for doc in docs}


def test_the_validation_catches_a_mistake() -> None:
    broken = copy.deepcopy(one("Deployment"))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpcc"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken, KUBERNETES_VERSIONS[0])
    monitor = one("ServiceMonitor", variant="production")
    for field, value in [("intervall", "30s"), ("interval", "30 seconds")]:
        broken = copy.deepcopy(monitor)
        broken["spec"]["endpoints"][0][field] = value
        with pytest.raises(jsonschema.ValidationError):
            validate(broken, KUBERNETES_VERSIONS[0])


def test_the_kustomize_stand_in_renders_json_patches_like_kustomize() -> None:
    doc: Manifest = {"spec": {"ports": [{"name": "grpc", "appProtocol": "h2c"}], "env": []}}
    apply_json_patch(
        doc,
        [
            {"op": "add", "path": "/spec/env/-", "value": {"name": "A"}},
            {"op": "add", "path": "/spec/env/0", "value": {"name": "B"}},
            {"op": "test", "path": "/spec/ports/0/name", "value": "grpc"},
            {"op": "remove", "path": "/spec/ports/0/appProtocol"},
            {"op": "replace", "path": "/spec/ports/0/name", "value": "g"},
        ],
    )
    assert doc == {"spec": {"ports": [{"name": "g"}], "env": [{"name": "B"}, {"name": "A"}]}}
    with pytest.raises(AssertionError):
        apply_json_patch(doc, [{"op": "test", "path": "/spec/ports/0/name", "value": "grpc"}])
    with pytest.raises(AssertionError):
        apply_json_patch(doc, [{"op": "remove", "path": "/spec/absent"}])


def test_every_file_under_deploy_k8s_is_used() -> None:
    """No manifest or patch lies around unreferenced (and so unvalidated)."""
    used: set[Path] = set()
    for kustomization_file in K8S.rglob("kustomization.yaml"):
        directory = kustomization_file.parent
        spec = kustomization(directory)
        used.add(kustomization_file)
        used.update((directory / entry).resolve() for entry in spec.get("resources", []))
        used.update((directory / patch["path"]).resolve() for patch in spec.get("patches", []))
    on_disk = {path.resolve() for path in K8S.rglob("*.yaml")}
    assert on_disk <= {path.resolve() for path in used}
    production = kustomization(PRODUCTION)
    assert {(PRODUCTION / c).resolve() for c in production["components"]} == {
        path.resolve() for path in (K8S / "components").iterdir()
    }


def test_probes_use_grpc_health_on_the_serving_port() -> None:
    container = greet_container()
    grpc_port = container_port("grpc")
    assert int(container_env()["GREET_PORT"]) == grpc_port
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == grpc_port, probe
        assert container[probe]["grpc"].get("service", "") == ""  # the whole server


@pytest.mark.parametrize("variant", VARIANTS)
def test_one_failed_probe_does_not_take_a_pod_out(variant: str) -> None:
    container = greet_container(variant)
    assert container["readinessProbe"]["failureThreshold"] > 1
    assert container["livenessProbe"]["failureThreshold"] > 1


def test_tls_probes_check_the_port_without_plaintext_grpc() -> None:
    """The kubelet's gRPC probe speaks plaintext (before 1.37's `mode: TLS`): against a TLS
    server it always fails, and the pods would never become ready."""
    assert "GREET_TLS_CERT" in container_env("production")
    container = greet_container("production")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert "grpc" not in container[probe] or container[probe]["grpc"].get("mode") == "TLS"
        assert container[probe]["tcpSocket"]["port"] == "grpc"
    for service in ("greet", "greet-headless"):
        ports = one("Service", service, variant="production")["spec"]["ports"]
        grpc = next(port for port in ports if port["name"] == "grpc")
        assert grpc.get("appProtocol") != "kubernetes.io/h2c"  # h2c is cleartext HTTP/2


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_environment_names_real_flags(variant: str) -> None:
    flags = {env_name(flag) for action in build_parser()._actions for flag in action.option_strings}
    assert set(container_env(variant)) <= flags


def test_the_base_environment_parses() -> None:
    env = container_env()
    config = parse_config([], environ=env)
    assert config.host == "::"
    assert config.port == 8080
    assert config.metrics_port == container_port("metrics")


def test_secrets_are_mounted_read_only_and_the_flags_point_at_their_files() -> None:
    pod = pod_spec("production")
    container = greet_container("production")
    env = container_env("production")
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
    secret_keys = {  # the keys `kubectl create secret tls` and the README's command make
        "greet-tls": {"tls.crt", "tls.key"},
        "greet-auth-tokens": {"tokens"},
    }
    wired = {
        "GREET_TLS_CERT": ("greet-tls", "tls.crt"),
        "GREET_TLS_KEY": ("greet-tls", "tls.key"),
        "GREET_AUTH_TOKEN_FILE": ("greet-auth-tokens", "tokens"),
    }
    for variable, (secret, key) in wired.items():
        directory, _, filename = env[variable].rpartition("/")
        mount = mounts[directory]
        assert mount["readOnly"] is True
        source = volumes[mount["name"]]["secret"]
        assert source["secretName"] == secret
        assert filename == key
        assert key in secret_keys[secret]
        # Readable by the unprivileged greet user: files are root-owned, group fsGroup.
        assert source["defaultMode"] & 0o040
        assert not source["defaultMode"] & 0o007  # and by nobody else
        assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]
    assert not {"GREET_TLS_CERT", "GREET_AUTH_TOKEN_FILE"} & set(container_env())


def test_termination_grace_outlasts_prestop_and_drain() -> None:
    pod = pod_spec()
    grace = parse_config([], environ=container_env()).grace
    command = greet_container()["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] > float(command[1]) + grace


def test_pods_run_as_the_images_unprivileged_user_with_limits() -> None:
    pod = pod_spec()
    container = greet_container()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert set(container["resources"]["limits"]) >= {"cpu", "memory"}
    user = dict(final_stage())["USER"]
    assert user.split(":")[0] == str(pod["securityContext"]["runAsUser"])


def test_services_reach_the_deployments_pods() -> None:
    labels = one("Deployment")["spec"]["template"]["metadata"]["labels"]
    port_names = {p["name"] for p in greet_container()["ports"]}
    for name in ("greet", "greet-headless"):
        service = one("Service", name)
        assert selects(service["spec"]["selector"], labels)
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names
    assert one("Service", "greet-headless")["spec"]["clusterIP"] == "None"
    assert "clusterIP" not in one("Service", "greet")["spec"]


def test_the_hpa_owns_the_replica_count_within_the_disruption_budget() -> None:
    deployment = one("Deployment")
    hpa = one("HorizontalPodAutoscaler")["spec"]
    target = hpa["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        deployment["apiVersion"],
        "Deployment",
        deployment["metadata"]["name"],
    )
    # `kubectl apply` of a Deployment with `replicas` would undo the HPA's choice.
    assert "replicas" not in deployment["spec"]
    budget = one("PodDisruptionBudget")["spec"]
    assert selects(
        budget["selector"]["matchLabels"], deployment["spec"]["template"]["metadata"]["labels"]
    )
    assert budget["maxUnavailable"] < hpa["minReplicas"] - 1  # a drain leaves two serving
    assert hpa["minReplicas"] <= hpa["maxReplicas"]
    # A CPU utilization target is a share of the container's CPU request.
    resources = [m["resource"] for m in hpa["metrics"] if m["type"] == "Resource"]
    assert resources
    assert {r["name"] for r in resources} <= set(greet_container()["resources"]["requests"])


def test_replicas_are_spread_over_nodes_to_back_the_disruption_budget() -> None:
    """One node's drain or failure takes out one replica: required spread over hostnames."""
    template = one("Deployment")["spec"]["template"]
    constraints = template["spec"]["topologySpreadConstraints"]
    by_node = [c for c in constraints if c["topologyKey"] == "kubernetes.io/hostname"]
    assert len(by_node) == 1
    assert by_node[0]["whenUnsatisfiable"] == "DoNotSchedule"
    assert by_node[0]["maxSkew"] == 1
    budget = one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"]
    for constraint in constraints:
        selector = constraint["labelSelector"]["matchLabels"]
        assert selects(selector, template["metadata"]["labels"])
        assert selector == budget  # the pods that are spread are the pods that are budgeted
        assert "pod-template-hash" in constraint.get("matchLabelKeys", [])


def test_the_service_monitor_scrapes_each_pods_metrics_port_once() -> None:
    monitor = one("ServiceMonitor", variant="production")["spec"]
    (endpoint,) = monitor["endpoints"]
    selected = [
        doc
        for doc in manifests("production")
        if doc["kind"] == "Service"
        and selects(monitor["selector"]["matchLabels"], doc["metadata"]["labels"])
    ]
    with_port = [
        service
        for service in selected
        if any(port["name"] == endpoint["port"] for port in service["spec"]["ports"])
    ]
    assert [service["metadata"]["name"] for service in with_port] == ["greet"]
    (port,) = (p for p in with_port[0]["spec"]["ports"] if p["name"] == endpoint["port"])
    assert container_port(port["targetPort"]) == int(container_env()["GREET_METRICS_PORT"])
    assert endpoint["path"] == "/metrics"
    assert endpoint.get("scheme", "http") == "http"


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_the_default_host_serves_ipv4_and_ipv6_clients(workers: str) -> None:
    """GREET_HOST of the image and the pods: IPv4-only, IPv6-only and dual-stack clusters
    reach the gRPC port (the kubelet's probes included) and the metrics port."""
    host = container_env()["GREET_HOST"]
    assert image_env()["GREET_HOST"] == host
    server = await ServerProcess(
        ["--metrics-port", "0"], env={"GREET_HOST": host, "GREET_WORKERS": workers}
    ).start()
    try:
        port = int(server.target.rsplit(":", 1)[1])
        for address in ("127.0.0.1", "[::1]"):
            async with GreetClient(f"{address}:{port}", timeout=10) as client:
                assert (await client.say_hello()).message == "Hello", address
        url = await server.wait_for_log(re.compile(r"metrics on http://\S+:(\d+)/metrics"))
        reader, writer = await asyncio.open_connection("127.0.0.1", int(url[1]))
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: greet\r\nConnection: close\r\n\r\n")
        status = await reader.readline()
        writer.close()
        assert status.startswith(b"HTTP/1.1 200")
    finally:
        await server.stop()


# --- the Dockerfile ---------------------------------------------------------------------------


def test_dockerfile_runs_the_server_as_non_root_on_a_slim_python() -> None:
    stage = final_stage()
    instructions = dict(stage)
    assert instructions["FROM"].startswith("python:3.11-slim")
    user = instructions["USER"].split(":")[0]
    assert user not in ("root", "0")
    runs = " ".join(arguments for instruction, arguments in stage if instruction == "RUN")
    assert f"useradd --system --uid {user}" in runs
    assert json.loads(instructions["CMD"]) == ["python", "-m", "greet.server"]
    assert instructions["EXPOSE"] == str(container_port("grpc"))
    assert greet_container()["image"].startswith("greet:")


def test_the_image_installs_exactly_the_locked_dependencies() -> None:
    runs = [arguments for instruction, arguments in final_stage() if instruction == "RUN"]
    copies = [
        arguments.split() for instruction, arguments in final_stage() if instruction == "COPY"
    ]
    (locked,) = [words[-1] for words in copies if words[0] == "constraints.txt"]
    installs = [shlex.split(run) for run in runs if "pip install" in run]
    dependencies, greet = installs
    assert {"--require-hashes", "--only-binary=:all:", "-r", locked} <= set(dependencies)
    assert "--no-deps" in greet
    assert any(word.endswith(".whl") for word in greet)
    assert "pip check" in runs[-1]
    # The lock was resolved for the image's Python.
    assert f"Python {image_python()} (the Dockerfile's)" in (ROOT / "constraints.txt").read_text()


def test_docker_build_context_holds_what_the_image_needs() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()  # (tomllib is Python 3.11+)
    readme = re.search(r'^readme = "([^"]+)"', pyproject, re.MULTILINE)
    wheel = re.search(
        r"^\[tool\.hatch\.build\.targets\.wheel\]\npackages = (\[.*\])", pyproject, re.M
    )
    assert readme is not None
    assert wheel is not None
    needed = {
        "pyproject.toml",
        readme.group(1),
        "LICENSE",  # hatchling puts it in the wheel's metadata
        "constraints.txt",
        *json.loads(wheel.group(1)),
    }
    copied: set[str] = set()
    for instruction, arguments in dockerfile_instructions():
        if instruction == "COPY" and not arguments.startswith("--from"):
            copied.update(arguments.split()[:-1])
    inside_a_copy = {
        path for path in needed for copy in copied if path == copy or path.startswith(f"{copy}/")
    }
    assert inside_a_copy == needed
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert not needed & ignored
    assert {".git", ".nox", "tests"} <= ignored


# --- constraints.txt (tools/constraints_lock.py; `nox -s lock_check` checks the real file) ------

DEPENDENCIES = ["grpclib==0.4.9", "h2>=4.1,<5", "uvloop>=0.19; sys_platform != 'win32'"]
COMPILED = """\
grpclib==0.4.9 \\
    --hash=sha256:aa
    # via greet (pyproject.toml)
h2==4.4.1 \\
    --hash=sha256:bb
uvloop==0.23.0 ; sys_platform != 'win32' \\
    --hash=sha256:cc
"""


def test_a_fresh_lock_has_no_problems() -> None:
    lock = render(COMPILED, DEPENDENCIES, "3.11")
    assert lock_problems(lock, DEPENDENCIES, "3.11") == []
    assert pinned_versions(lock).keys() == {"grpclib", "h2", "uvloop"}
    assert lock.endswith(COMPILED)


def test_the_digest_ignores_order_and_spelling_only() -> None:
    respelled = ["uvloop >= 0.19 ; sys_platform != 'win32'", "h2<5,>=4.1", "grpclib == 0.4.9"]
    assert dependencies_digest(respelled, "3.11") == dependencies_digest(DEPENDENCIES, "3.11")
    assert dependencies_digest(DEPENDENCIES, "3.12") != dependencies_digest(DEPENDENCIES, "3.11")


@pytest.mark.parametrize(
    ("dependencies", "python", "complaint"),
    [
        ([*DEPENDENCIES, "ngh2==0.3.0"], "3.11", "ngh2 is not pinned"),
        (["grpclib==0.4.10", *DEPENDENCIES[1:]], "3.11", "grpclib==0.4.9 does not satisfy"),
        (DEPENDENCIES, "3.12", "Python (3.12) changed"),
        (["h2>=4.1,<5.1", *DEPENDENCIES[::2]], "3.11", "dependencies or"),
    ],
)
def test_a_stale_lock_is_reported(dependencies: list[str], python: str, complaint: str) -> None:
    lock = render(COMPILED, DEPENDENCIES, "3.11")
    problems = lock_problems(lock, dependencies, python)
    assert any(complaint in problem for problem in problems), problems


def test_a_hand_written_lock_is_reported() -> None:
    problems = lock_problems(COMPILED, DEPENDENCIES, "3.11")
    assert problems == ["it has no '# resolved-from-sha256:' line (not written by nox -s lock)"]
