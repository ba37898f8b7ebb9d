#!/usr/bin/env bash
# The docker check: builds the image, starts it with docker-compose, runs the course
# walk-through against the container and finds the delivered objects in the host volume.
#
# Repeatable on a machine that cannot pull images:
# - dockerd is started here if none runs (Debian's docker.io; docker-compose 1.29), with
#   --bridge=none --iptables=false: this check needs no container network.
# - The base image is a local stand-in, made under the distroless name the Dockerfile
#   uses: a root file system holding only the binary's shared libraries (from `ldd`), an
#   /etc/passwd with the nonroot user 65532 and a /tmp, imported with `docker import`.
# - The container shares the host's network (network_mode: host, FIRELAKE_HOST=127.0.0.1)
#   instead of docker-compose.yml's port mapping, since traffic to a bridge's private
#   addresses is not allowed here; everything else is docker-compose.yml as users run it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
base="gcr.io/distroless/cc-debian12:nonroot"
work=$(mktemp -d)
dockerd_pid=""
cleanup() {
  cd "$root"
  docker-compose -p firelake-check -f "$work/compose.yml" down -v >/dev/null 2>&1 || true
  # A dockerd this script started is stopped again, so nothing outlives the check.
  [ -n "$dockerd_pid" ] && kill "$dockerd_pid" 2>/dev/null && wait "$dockerd_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

if ! docker info >/dev/null 2>&1; then
  command -v dockerd >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io docker-compose >/dev/null; }
  dockerd --bridge=none --iptables=false --ip6tables=false >"$work/dockerd.log" 2>&1 &
  dockerd_pid=$!
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null
fi
command -v docker-compose >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null; }

cargo build --release --locked -p firelake

if ! docker image inspect "$base" >/dev/null 2>&1; then
  rootfs="$work/rootfs"
  mkdir -p "$rootfs/etc" "$rootfs/tmp"
  chmod 1777 "$rootfs/tmp"
  for lib in $(ldd target/release/firelake | grep -o '/[^ ]*'); do
    mkdir -p "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
  done
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$rootfs/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$rootfs/etc/group"
  tar -C "$rootfs" -c . | docker import - "$base" >/dev/null
  echo "docker-check: made a local stand-in for $base"
fi

# The project's compose file, with host networking instead of the port mapping, and
# absolute paths (the copy lives in $work).
python3 - "$root" "$work" <<'PY'
import sys
root, work = sys.argv[1], sys.argv[2]
text = open(f"{root}/docker-compose.yml").read()
text = text.replace('    ports:\n      - "4573:4573"\n', "    network_mode: host\n")
text = text.replace("      FIRELAKE_INIT: /etc/firelake/workshop.json\n", "      FIRELAKE_INIT: /etc/firelake/workshop.json\n      FIRELAKE_HOST: 127.0.0.1\n")
text = text.replace("./firelake-data", f"{work}/firelake-data").replace("./fixtures", f"{root}/fixtures").replace("    build: .", f"    build: {root}")
assert "network_mode: host" in text and "4573:4573" not in text
open(f"{work}/compose.yml", "w").write(text)
PY
mkdir -p "$work/firelake-data"
chown 65532:65532 "$work/firelake-data"

docker-compose -p firelake-check -f "$work/compose.yml" build --quiet
docker-compose -p firelake-check -f "$work/compose.yml" up -d
container=$(docker-compose -p firelake-check -f "$work/compose.yml" ps -q firelake)
for _ in $(seq 60); do
  [ "$(docker inspect --format '{{.State.Health.Status}}' "$container")" = healthy ] && break
  sleep 1
done
health=$(docker inspect --format '{{.State.Health.Status}}' "$container")
echo "docker-check: container is $health, running as $(docker inspect --format '{{.Config.User}}' "$container")"
# Waiting is not enough: a container that never became healthy fails the check here.
if [ "$health" != healthy ]; then
  docker logs "$container" 2>&1 | tail -20
  echo "docker-check: the container did not become healthy within 60 s" >&2
  exit 1
fi
docker image inspect firelake:local --format 'docker-check: image firelake:local is {{.Size}} bytes'

# The walk-through creates its own stream, so it gets a name beside the init file's.
.venv/bin/python "$root/../shared/acceptance/seed_scenario.py" --endpoint http://127.0.0.1:4573 \
  --stream course-walkthrough --strict-keys --flush --expect-objects 1 --keep
# The stream the init file made is ready too.
target/release/firelake produce --stream gps-delivery-stream --file fixtures/telematics.txt --endpoint-url http://127.0.0.1:4573 --quiet
curl -fsS -X POST 'http://127.0.0.1:4573/_firelake/flush?stream=gps-delivery-stream' >/dev/null

objects=$(find "$work/firelake-data/sd-vehicle-data" -type f | wc -l)
echo "docker-check: $objects object(s) in the host volume:"
find "$work/firelake-data/sd-vehicle-data" -type f | sed "s|$work/||"
[ "$objects" -eq 2 ]
delivered=$(cat $(find "$work/firelake-data/sd-vehicle-data" -type f -name 'gps-delivery-stream-*') | wc -l)
[ "$delivered" -eq "$(wc -l < fixtures/telematics.txt)" ]
echo "docker-check: 1 passed, 0 failed"
