#!/usr/bin/env bash
# The current stack (TFX 1.21 / TF 2.21 / Python 3.13) on a host whose glibc is too old for it
# (ml-metadata and TFDV 1.21 ship manylinux_2_39 wheels only): a Debian 13 chroot made with
# debootstrap, the repository bind-mounted at /repo, the venv inside the chroot so that the
# host's .venv is left alone. One command per use:
#
#   .ci/current_stack.sh test [PYTEST_ARGS...]   make test STACK=current (the whole suite), inside the chroot
#   .ci/current_stack.sh demo                    make demo STACK=current (DEMO_DIR=demo_out_current)
#   .ci/current_stack.sh run CMD [ARGS...]       any command in /repo with the chroot's venv first on PATH,
#                                                e.g. run python -m pytest tests/serving -q
#   .ci/current_stack.sh clean                   delete the chroot
#
# MBT_CHROOT (default /var/tmp/mbt-trixie) is where the chroot lives; it is built on first use
# and reused after (CI deletes it first: .ci/run). DEBIAN_MIRROR overrides the archive. Mounts
# are private to each call (unshare) and go with it.
# Needs root (debootstrap is installed with apt-get when missing) and network access to the
# Debian archive and PyPI.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
ROOT=${MBT_CHROOT:-/var/tmp/mbt-trixie}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
VENV=/opt/mbt-venv
PACKAGES=python3,python3-venv,python3-dev,g++,make,ca-certificates

# Each call runs in its own mount namespace: its mounts (/proc, /sys, /dev/shm, /repo) are
# invisible to the host and to other calls, and vanish when it exits, however it exits.
if [ -z "${MBT_CHROOT_NS:-}" ]; then
  exec env MBT_CHROOT_NS=1 unshare --mount --propagation private "$0" "$@"
fi

mount_in() {  # mount_in TARGET MOUNT_ARGS...
  mkdir -p "$ROOT$1"
  mountpoint -q "$ROOT$1" || mount "${@:2}" "$ROOT$1"
}

# env -i: the host's pip settings (PIP_FIND_LINKS, PIP_CERT, ...) must not leak into the chroot.
in_root() {
  env -i HOME=/root LANG=C.UTF-8 TERM=dumb PATH=$VENV/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
    ${NICE:+nice -n "$NICE"} chroot "$ROOT" "$@"
}

# Never rm -rf through a mount: a leftover bind mount of /repo would take the repository with it.
remove_root() {
  if awk -v r="$ROOT/" 'index($2 "/", r) == 1 {found=1} END {exit !found}' /proc/mounts; then
    echo "current_stack: something is still mounted under $ROOT; unmount it first" >&2; exit 1
  fi
  rm -rf --one-file-system "$ROOT"
}

build_root() {
  [ -f "$ROOT/.mbt-ready" ] && return
  local t0=$SECONDS
  remove_root
  if ! command -v debootstrap >/dev/null; then  # a fresh host (CI) has none
    echo "current_stack: installing debootstrap (apt-get)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  fi
  echo "current_stack: debootstrap trixie into $ROOT" >&2
  debootstrap --variant=minbase --include="$PACKAGES" trixie "$ROOT" "$MIRROR" >/dev/null
  # Corporate/sandbox CAs the host trusts; without them pip fails with CERTIFICATE_VERIFY_FAILED.
  cp /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/" 2>/dev/null || true
  in_root update-ca-certificates >/dev/null
  touch "$ROOT/.mbt-ready"
  echo "current_stack: chroot ready in $((SECONDS - t0)) s" >&2
}

enter() {
  cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
  # The host's name too: Beam's embedded job service tells SDK workers to dial it back at the
  # machine's hostname, which the chroot must resolve (test_portable_workers).
  cp /etc/hosts "$ROOT/etc/hosts"
  mount_in /proc -t proc proc
  mount_in /sys -t sysfs -o ro sysfs
  mount_in /dev/shm -t tmpfs -o mode=1777 shm  # multiprocessing semaphores (Beam, multi-worker tests)
  mount_in /repo --bind "$REPO"
}

make_in_root() {
  in_root make -C /repo STACK=current VENV=$VENV "$@"
}

cmd=${1:-test}
[ $# -gt 0 ] && shift
case $cmd in
  clean) remove_root; exit 0 ;;
  test|demo|run) ;;
  *) echo "usage: $0 test [PYTEST_ARGS...] | demo | run CMD [ARGS...] | clean" >&2; exit 2 ;;
esac
build_root
enter
t0=$SECONDS
make_in_root venv
echo "current_stack: venv ready in $((SECONDS - t0)) s" >&2
case $cmd in
  test) NICE=${NICE-10} make_in_root test PYTEST_ARGS="$*" ;;
  demo) NICE=${NICE-10} make_in_root demo DEMO_DIR=demo_out_current ;;
  run) in_root env -C /repo PYTHONPATH=/repo "$@" ;;
esac
