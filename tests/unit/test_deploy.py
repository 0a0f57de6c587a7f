"""deploy/ is validated where no container engine runs: docker-compose's own schema check,
the Kubernetes schemas (kubernetes-validate bundles them), and cross-checks against the code
(every RAFSS_* variable is a setting, every command a CLI verb, the scaler's queue a queue)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
MANIFESTS = sorted((DEPLOY / "k8s").glob("*.yaml"))
NOT_SETTINGS = {"RAFSS_REDIS_ADDRESS", "RAFSS_REDIS_PASSWORD", "RAFSS_BOOTSTRAP_ADMIN_TOKEN"}


def _compose(path: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("docker-compose")
    assert exe, "install Debian's docker-compose (apt-get install -y docker-compose)"
    return subprocess.run([exe, "-f", str(path), "-p", "rafss", "config", "-q"],
                          capture_output=True, text=True, cwd=REPO)


def test_compose_file_is_valid(tmp_path):
    assert _compose(DEPLOY / "compose.yaml").returncode == 0
    broken = tmp_path / "compose.yaml"  # the validator does reject a bad file
    broken.write_text((DEPLOY / "compose.yaml").read_text().replace(
        "condition: service_healthy", "condition: when_it_feels_like_it", 1))
    result = _compose(broken)
    assert result.returncode != 0 and "condition" in result.stderr


def test_kubernetes_manifests_are_valid():
    exe = Path(sys.executable).parent / "kubernetes-validate"
    result = subprocess.run([str(exe), "--strict", *map(str, MANIFESTS)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed for resource deployment/rafss-worker" in result.stdout + result.stderr


def _documents() -> list[dict]:
    return [d for path in MANIFESTS for d in yaml.safe_load_all(path.read_text()) if d]


def _settings_variables() -> set[str]:
    from rafss_core.config import Settings

    names = {f"RAFSS_{name.upper()}" for name in Settings.model_fields}
    return names | {f.alias for f in Settings.model_fields.values() if f.alias}


def _cli_verbs() -> set[str]:
    from typer.main import get_command

    from rafss_core.cli import app

    return set(get_command(app).commands)  # type: ignore[attr-defined]


def test_every_variable_is_a_setting_and_every_command_a_verb():
    variables, verbs = _settings_variables(), _cli_verbs()
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    env = dict(compose["x-rafss-env"])
    config = next(d for d in _documents() if d["kind"] == "ConfigMap")
    secret = next(d for d in _documents() if d["kind"] == "Secret")
    for name in [*env, *config["data"], *secret["stringData"]]:
        assert name in variables or name in NOT_SETTINGS, f"{name} is not a RAFSS setting"
    rafss_services = {k: v for k, v in compose["services"].items()
                      if str(v.get("image", "")).startswith("rafss:")}
    assert {"scp", "api", "worker"} <= set(rafss_services)
    for service in rafss_services.values():
        assert service["command"][0] in verbs
    for doc in _documents():
        for container in doc.get("spec", {}).get("template", {}).get("spec", {}).get(
                "containers", []):
            words = container.get("args") or container.get("command", [])
            verb = words[0] if words[0] != "sh" else re.search(r"rafss (\w+)", words[2])[1]
            assert verb in verbs, verb


def test_references_between_manifests_resolve():
    from workers.celery_app import MODEL_QUEUE

    docs = _documents()
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    secret = next(d for d in docs if d["kind"] == "Secret")
    for doc in docs:
        pod = doc.get("spec", {}).get("template", {}).get("spec", {})
        for container in pod.get("containers", []):
            for ref in container.get("envFrom", []):
                kind = "ConfigMap" if "configMapRef" in ref else "Secret"
                name = (ref.get("configMapRef") or ref.get("secretRef"))["name"]
                assert (kind, name) in names, (kind, name)
        for volume in pod.get("volumes", []):
            claim = volume.get("persistentVolumeClaim")
            if claim:
                assert ("PersistentVolumeClaim", claim["claimName"]) in names
    scaler = next(d for d in docs if d["kind"] == "ScaledObject")
    assert ("Deployment", scaler["spec"]["scaleTargetRef"]["name"]) in names
    (trigger,) = scaler["spec"]["triggers"]
    assert trigger["type"] == "redis" and trigger["metadata"]["listName"] == MODEL_QUEUE
    auth = next(d for d in docs if d["kind"] == "TriggerAuthentication")
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    for ref in auth["spec"]["secretTargetRef"]:
        assert ref["key"] in secret["stringData"]
    worker = next(d for d in docs if d["kind"] == "Deployment"
                  and d["metadata"]["name"] == "rafss-worker")
    limits = worker["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "1"


@pytest.mark.parametrize("target", ["cpu", "cuda"])
def test_dockerfile_has_both_targets(target):
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(rf"^FROM \S+ AS {target}$", text, re.M)
    assert "SAM2_BUILD_CUDA=1" in text and "SAM2_BUILD_CUDA=0" in text
