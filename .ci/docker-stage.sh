#!/usr/bin/env bash
# CI docker stage: proves the image builds and answers, on a real Docker engine.
#
#   lint      hadolint on every Dockerfile; docker-compose config (default, gpu, lb); nginx -t
#   single    build `api`, `docker-compose up -d`, wait for /readyz, D2L numbers and PNGs of a
#             real photo from the host, non-root user, threads fitted to the CPU limit, Docker
#             health status "healthy", limits and read-only root applied
#   load      bench/loadtest.py against that stack: a burst of uploads near the upload limit
#             and 16 MP photos, then a worker SIGKILLed mid-request (the SDK's retry succeeds)
#   scale     the lb profile: `--scale api=2` behind nginx (Debian's nginx stands in for the
#             official image), requests reach both replicas
#   down      `docker-compose down -v`, always (trap), also after a failure
#
# Needs root (it may install and start dockerd through ../shared/tools/local-docker.sh, which
# also builds the local base image); skips with a message where that cannot be had. No Docker
# Hub here: BASE_IMAGE is the local image that script prints. Prints a timing per step.
set -euo pipefail
cd "$(dirname "$0")/.."

STAGE_LIMIT_S=900
stage_start=$SECONDS
timings=()
say() { echo "== docker: $*"; }
skip() { say "SKIPPED: $*"; exit 0; }
timed() {  # timed <label> <command...>: run it, record and print how long it took
  local label=$1 start=$SECONDS
  shift
  "$@"
  timings+=("$(printf '%5ds  %s' $((SECONDS - start)) "$label")")
  say "$label done in $((SECONDS - start)) s"
}
free_port() { .venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

[ "$(id -u)" = 0 ] || skip "not root; CI runs this stage as root (it may need to start dockerd)"
tool=../shared/tools/local-docker.sh
[ -f "$tool" ] || skip "$tool not found (it provides the engine and the local base image)"

say "engine and base image ($tool)"
engine_start=$SECONDS
if ! BASE_IMAGE=$(bash "$tool" | tail -n1) || [ -z "$BASE_IMAGE" ]; then
  skip "no Docker engine could be had ($tool failed; see its output above)"
fi
timings+=("$(printf '%5ds  %s' $((SECONDS - engine_start)) "engine + base image")")
say "BASE_IMAGE=$BASE_IMAGE; $(docker version --format 'engine {{.Server.Version}}'); $(docker-compose version --short 2>/dev/null | sed 's/^/docker-compose /')"

# Legacy builder on purpose: the Dockerfiles must build without BuildKit.
export BASE_IMAGE DOCKER_BUILDKIT=0 COMPOSE_DOCKER_CLI_BUILD=0
export COMPOSE_PROJECT_NAME=convserve-ci
export CONVSERVE_HOST_PORT CONVSERVE_LB_PORT NGINX_IMAGE=convserve-ci/nginx:latest
CONVSERVE_HOST_PORT=$(free_port)
CONVSERVE_LB_PORT=$(free_port)
scale_out=(docker-compose -f docker-compose.yml --profile lb)
photo=tests/data/chelsea.png
[ -f "$photo" ] || photo=../shared/images/chelsea.png

cleanup() {
  local rc=$?
  if [ "$rc" != 0 ]; then
    say "FAILED (exit $rc); last service logs:"
    "${scale_out[@]}" logs --no-color --tail=60 || true
  fi
  say "down"
  "${scale_out[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
  say "timings:"
  printf '%s\n' "${timings[@]}"
  say "stage total $((SECONDS - stage_start)) s (limit ${STAGE_LIMIT_S} s)"
  exit "$rc"
}
trap cleanup EXIT

lint() {
  .venv/bin/hadolint Dockerfile Dockerfile.cuda .ci/nginx.Dockerfile
  docker-compose config -q
  docker-compose --profile gpu config -q
  "${scale_out[@]}" config -q
  docker build -q -f .ci/nginx.Dockerfile --build-arg BASE_IMAGE -t "$NGINX_IMAGE" .ci >/dev/null
  docker run --rm --read-only --tmpfs /tmp -v "$PWD/deploy/nginx/nginx.conf:/etc/nginx/nginx.conf:ro" \
    "$NGINX_IMAGE" nginx -e stderr -t
}
timed "lint: hadolint, compose config, nginx -t" lint

timed "build api image" timeout 420 docker-compose build api
timed "image test: 1-CPU plan, non-root, HEALTHCHECK (tests/docker/test_image.py)" \
  env CONVSERVE_DOCKER_TESTS=1 timeout 300 .venv/bin/python -m pytest -q -p no:cacheprovider \
  tests/docker/test_image.py
docker image ls convserve:cpu --format 'image convserve:cpu: {{.Size}}'

timed "up -d (single instance, host port $CONVSERVE_HOST_PORT)" docker-compose up -d api
timed "checks from the host" .venv/bin/python .ci/docker_check.py \
  --url "http://127.0.0.1:$CONVSERVE_HOST_PORT" --image "$photo" --image tests/data/rocket.jpg

container_checks() {
  local cid uid logs plan health state
  cid=$(docker-compose ps -q api)
  uid=$(docker-compose exec -T api id -u | tr -d '\r')
  [ "$uid" != 0 ] || { say "container runs as root"; return 1; }
  say "container user id $uid"
  logs=$(docker-compose logs --no-color api)
  plan=$(grep -m1 '"starting uvicorn"' <<<"$logs")
  say "launcher: ${plan#*| }"
  # compose: cpus 2, WEB_CONCURRENCY 2 -> one thread per convolution, one convolution a worker
  grep -q '"workers": 2, "intra_op_threads": 1, "worker_threads": 1' <<<"$plan" \
    || { say "unexpected launch plan for 2 CPUs and 2 workers"; return 1; }
  state=$(docker inspect --format \
    'cpus={{.HostConfig.NanoCpus}} memory={{.HostConfig.Memory}} read_only={{.HostConfig.ReadonlyRootfs}} user={{.Config.User}} restart={{.HostConfig.RestartPolicy.Name}}' "$cid")
  say "$state"
  [ "$state" = "cpus=2000000000 memory=2147483648 read_only=true user=10001:10001 restart=unless-stopped" ] \
    || { say "limits, read-only root, user or restart policy not as in docker-compose.yml"; return 1; }
  for _ in $(seq 1 45); do
    health=$(docker inspect --format '{{.State.Health.Status}}' "$cid")
    [ "$health" = healthy ] && break
    sleep 2
  done
  say "Docker health status: $health"
  [ "$health" = healthy ]
}
timed "container: non-root, launch plan, limits, health" container_checks

load_checks() {
  local cid state
  cid=$(docker-compose ps -q api)
  # 16 uploads near CONVSERVE_MAX_UPLOAD_BYTES, then 4 concurrent 16 MP photos: only 200 or
  # 503 + Retry-After, no reset, no worker restart; then SIGKILL (from the host) the worker
  # busy with an SDK request: the retry succeeds, uvicorn replaces it, /readyz recovers.
  .venv/bin/python bench/loadtest.py --url "http://127.0.0.1:$CONVSERVE_HOST_PORT" \
    --container "$cid" --scenario burst --scenario kill --uploads 16 --photos 4
  # The container itself was neither restarted nor OOM-killed.
  state=$(docker inspect --format 'restarts={{.RestartCount}} oom={{.State.OOMKilled}}' "$cid")
  say "$state"
  [ "$state" = "restarts=0 oom=false" ]
}
timed "load: burst and a killed worker (bench/loadtest.py)" load_checks

large_photo_check() {
  # One 48 MP photo (8000 x 6000 JPEG) with Sobel, format=json, through the 2 GB stack at the
  # service's default CONVSERVE_MAX_PIXELS: convolved in bands, it fits one worker's budget.
  .venv/bin/python - "$photo" "http://127.0.0.1:$CONVSERVE_HOST_PORT" <<'PY'
import io, sys
import httpx
from PIL import Image
photo, url = sys.argv[1], sys.argv[2]
buffer = io.BytesIO()
Image.open(photo).convert("RGB").resize((8000, 6000)).save(buffer, "JPEG", quality=85)
response = httpx.post(url + "/v1/convolve", files={"image": ("big.jpg", buffer.getvalue())},
                      data={"preset": "sobel"}, timeout=300)
assert response.status_code == 200, (response.status_code, response.text[:500])
body = response.json()
assert body["shape"] == [2, 6000, 8000], body["shape"]
print("48 MP Sobel:", response.headers["server-timing"], "engine", body["engine"])
PY
  state=$(docker inspect --format 'restarts={{.RestartCount}} oom={{.State.OOMKilled}}' \
    "$(docker-compose ps -q api)")
  say "$state"
  [ "$state" = "restarts=0 oom=false" ]
}
timed "a 48 MP photo with Sobel (bands within the budget)" large_photo_check

timed "down (single instance)" docker-compose down -v
timed "up lb profile, --scale api=2 (waits for healthy replicas)" \
  "${scale_out[@]}" up -d --scale api=2
timed "checks through nginx (port $CONVSERVE_LB_PORT)" .venv/bin/python .ci/docker_check.py \
  --url "http://127.0.0.1:$CONVSERVE_LB_PORT" --image "$photo" --replicas 2

elapsed=$((SECONDS - stage_start))
if [ "$elapsed" -gt "$STAGE_LIMIT_S" ]; then
  say "the stage took $elapsed s, over its ${STAGE_LIMIT_S} s budget"
  exit 1
fi
say "passed"
