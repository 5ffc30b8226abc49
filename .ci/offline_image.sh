#!/usr/bin/env bash
# Build kubeflow/Dockerfile with podman on a host without registry access, then run the compiled
# Vertex spec's tasks in the built image, one container per task (docs/cloud.md, "Before your
# first cloud run"). The Dockerfile builds unchanged; the two registry images its FROM lines
# name are stand-ins made here:
#   - the base: the current stack's Debian 13 chroot (.ci/current_stack.sh), imported as an
#     image whose PATH starts with its venv: the pinned environment is installed there already,
#     so the Dockerfile's pip steps download nothing (the build runs with --network none);
#   - apache/beam_python3.13_sdk:2.77.0: /opt/apache/beam/boot as a shell stand-in for the Go
#     boot program (its --worker_pool mode only).
# Needs root, podman and runc (apt-get install podman runc). Not part of `make test`.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
ROOT=${MBT_CHROOT:-/var/tmp/mbt-trixie}
BASE=localhost/mbt-trixie-base:1
BEAM=docker.io/apache/beam_python3.13_sdk:2.77.0
VERSION=$(cd "$REPO" && python3 setup.py --version 2>/dev/null)
IMAGE=localhost/mbt-pipeline:$VERSION
# runc: Debian's default crun refuses hosts with hybrid cgroups; the ulimits are the host's own
# (podman's defaults ask for more than an unprivileged-resource host may set).
RUN_OPTS=(--runtime runc --ulimit "nofile=$(ulimit -n):$(ulimit -Hn)" --ulimit nproc=4096:4096)
WORK=$ROOT/tmp/offline-image  # inside the chroot, so its /tmp/offline-image is the same folder

[ -f "$ROOT/.mbt-ready" ] || "$REPO/.ci/current_stack.sh" run true
if ! podman image exists "$BASE"; then
  tar -C "$ROOT" --exclude=./proc --exclude=./sys --exclude=./dev --exclude=./repo \
      --exclude=./tmp -cf - . |
    podman import --change 'ENV PATH=/opt/mbt-venv/bin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - "$BASE"
fi
if ! podman image exists "$BEAM"; then
  stage=$(mktemp -d)
  mkdir -p "$stage/opt/apache/beam"
  printf '%s\n' '#!/bin/sh' '# Stand-in for the Beam SDK image'"'"'s boot program: --worker_pool only.' \
    '[ "$1" = "--worker_pool" ] && exec python -m apache_beam.runners.worker.worker_pool_main --service_port=50000' \
    'echo "stand-in boot: only --worker_pool" >&2; exit 2' > "$stage/opt/apache/beam/boot"
  chmod +x "$stage/opt/apache/beam/boot"
  tar -C "$stage" -cf - opt | podman import - "$BEAM"
  rm -rf "$stage"
fi
SECONDS=0
podman build "${RUN_OPTS[@]}" --pull=never --network none --build-arg BASE_IMAGE="$BASE" \
  -f "$REPO/kubeflow/Dockerfile" -t "$IMAGE" "$REPO"
echo "offline_image: built $IMAGE in $SECONDS s"

# The demo data and the spec as the test makes them, on the current stack (the launcher's).
rm -rf "$WORK" && mkdir -p "$WORK"
"$REPO/.ci/current_stack.sh" run python -c "
from tests.kubeflow.test_compiled_spec_runs import BUCKET, _demo_data, compile_spec
_demo_data('/tmp/offline-image/bucket/data')
compile_spec('/tmp/offline-image/spec.json', image='$IMAGE')
print(BUCKET)" | tail -1 > "$WORK/bucket_name"
SECONDS=0
(cd "$REPO" && python3 -m tests.kubeflow.spec_runner "$WORK/spec.json" \
  --bucket "$(cat "$WORK/bucket_name")=$WORK/bucket" --podman "$IMAGE" --logs "$WORK/logs")
echo "offline_image: every task of the spec ran in $IMAGE in $SECONDS s; pushed:" \
  "$(ls "$WORK"/bucket/mbt/serving/mbt)"
