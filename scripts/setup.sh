#!/usr/bin/env bash
# Prepares this machine for Kennel: a Docker engine, `docker compose` v2 and buildx, the base image for
# both containers, the host virtual environment for tests and tools, and one for SageMaker's Python SDK.
# Make calls it; every step first checks whether its work is already done and says in one line what it
# did or reused.
#
#   scripts/setup.sh            all steps
#   scripts/setup.sh engine     one step: engine | compose | base | registry | venv | sdk | browser | axe
#                               | loadgen (wrk, for make bench only)
#
# On a workstation with Docker and internet the first three steps find everything in place. On a bare
# Debian machine without systemd or a reachable registry (our CI) they install the engine from Debian,
# start dockerd in the background, take compose and buildx from Debian 13's packages, and build a
# Python 3.11 base image from Debian packages with debootstrap.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE="$ROOT/.kennel"                      # machine-local choices, ignored by git
UPSTREAM_BASE=python:3.11-slim-bookworm
SUBSTITUTE_BASE=kennel/python:3.11-bookworm-debootstrap
DOCKERD_LOG=/var/log/kennel-dockerd.log
PLUGIN_DIR=/usr/local/lib/docker/cli-plugins
VENV="$ROOT/.venv"
SDK_VENV="$STATE/sdk-venv"                 # SageMaker's Python SDK for tests/sdk/ (requirements-sdk.txt)
PYTHON=${PYTHON:-python3}

mkdir -p "$STATE"
say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
    command -v apt-get >/dev/null || die "apt-get not found; install $* by hand (see README, 'On a workstation')"
    # Lists can be missing or stale on a new machine; refresh once per run.
    if [ -z "${APT_UPDATED:-}" ]; then
        as_root apt-get update -qq >/dev/null
        APT_UPDATED=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUGGEST=1 \
        apt-get install -y -qq "$@" >>"$STATE/apt.log" 2>&1 \
        || { tail -n 20 "$STATE/apt.log" >&2; die "apt-get install $* failed; see $STATE/apt.log"; }
}

# The mirror this machine already uses for Debian, so that no host name lives in this repository.
debian_mirror() {
    local uri
    uri=$(grep -hE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
        | grep -v -e security -e '\[' | grep -oE '(https?|file)://[^ ]+' | grep -E '/debian/?$' | head -n 1 || true)
    [ -n "$uri" ] || die "could not read a Debian mirror from /etc/apt/sources.list*"
    printf '%s\n' "${uri%/}"
}

step_engine() {
    if docker info >/dev/null 2>&1; then
        say "docker engine: running, left alone ($(docker version -f '{{.Server.Version}}'))"
        return
    fi
    if ! command -v dockerd >/dev/null; then
        say "docker engine: installing Debian's docker.io"
        apt_install docker.io
    fi
    if [ -S /var/run/docker.sock ] && pgrep -x dockerd >/dev/null; then
        say "docker engine: dockerd is starting, waiting for it"
    else
        # No systemd here: run dockerd detached, its log in a file.
        as_root sh -c "setsid nohup dockerd >>'$DOCKERD_LOG' 2>&1 </dev/null &"
    fi
    for _ in $(seq 1 60); do
        if docker info >/dev/null 2>&1; then
            say "docker engine: started ($(docker version -f '{{.Server.Version}}'), log in $DOCKERD_LOG)"
            return
        fi
        sleep 1
    done
    tail -n 20 "$DOCKERD_LOG" >&2 || true
    die "dockerd did not answer within 60 s; its log is $DOCKERD_LOG"
}

step_compose() {
    local need=()
    docker compose version >/dev/null 2>&1 || need+=(docker-compose)
    docker buildx version >/dev/null 2>&1 || need+=(docker-buildx)
    if [ ${#need[@]} -eq 0 ]; then
        say "compose and buildx: present ($(docker compose version --short), buildx $(docker buildx version | awk '{print $2}'))"
        return
    fi
    # Debian 12 only has Compose v1. Debian 13 ships v2 and buildx as static Go binaries that run here;
    # fetch just those packages through a private apt state so the machine's own sources stay untouched.
    say "compose and buildx: taking ${need[*]} from Debian 13"
    command -v apt-get >/dev/null || die "install the docker compose v2 plugin by hand (see README)"
    local work
    work=$(mktemp -d)
    mkdir -p "$work/sources" "$work/lists/partial" "$work/debs"
    cat >"$work/sources/trixie.sources" <<EOF
Types: deb
URIs: $(debian_mirror)
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    local apt_opts=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$work/sources"
        -o "Dir::State::Lists=$work/lists" -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
    apt-get "${apt_opts[@]}" update -qq >/dev/null
    (cd "$work/debs" && apt-get "${apt_opts[@]}" download -qq "${need[@]}" >/dev/null)
    as_root mkdir -p "$PLUGIN_DIR"
    for deb in "$work"/debs/*.deb; do
        dpkg-deb -x "$deb" "$work/root"
    done
    as_root install -m 0755 "$work"/root/usr/libexec/docker/cli-plugins/docker-* "$PLUGIN_DIR/"
    rm -rf "$work"
    say "compose and buildx: installed ($(docker compose version --short))"
}

step_base() {
    local chosen
    if docker image inspect "$UPSTREAM_BASE" >/dev/null 2>&1; then
        chosen=$UPSTREAM_BASE
        say "base image: $UPSTREAM_BASE present, reused"
    elif timeout 60 docker pull -q "$UPSTREAM_BASE" >/dev/null 2>&1; then
        chosen=$UPSTREAM_BASE
        say "base image: pulled $UPSTREAM_BASE"
    elif docker image inspect "$SUBSTITUTE_BASE" >/dev/null 2>&1; then
        chosen=$SUBSTITUTE_BASE
        say "base image: no registry answers; reused the substitute $SUBSTITUTE_BASE"
    else
        say "base image: no registry answers; building $SUBSTITUTE_BASE from Debian packages (about a minute)"
        build_substitute_base
        chosen=$SUBSTITUTE_BASE
    fi
    printf '%s\n' "$chosen" >"$STATE/base-image"
}

# A stand-in for python:3.11-slim-bookworm: Debian 12's own Python 3.11 with venv and pip. The machine's
# extra CA certificates go in so that pip works inside `docker build` behind a TLS-inspecting proxy.
build_substitute_base() {
    command -v debootstrap >/dev/null || apt_install debootstrap
    local rootfs
    rootfs=$(mktemp -d)
    as_root debootstrap --variant=minbase \
        --include=python3,python3-venv,python3-pip,ca-certificates \
        bookworm "$rootfs" "$(debian_mirror)" >"$STATE/debootstrap.log" 2>&1 \
        || die "debootstrap failed; see $STATE/debootstrap.log"
    local extra=0
    for crt in /usr/local/share/ca-certificates/*.crt; do
        [ -e "$crt" ] || continue
        as_root cp "$crt" "$rootfs/usr/local/share/ca-certificates/"
        extra=$((extra + 1))
    done
    as_root chroot "$rootfs" update-ca-certificates >/dev/null 2>&1
    # Keep the image close to the slim one: no apt lists, no caches, no docs.
    as_root rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/usr/share/doc/* \
        "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
    as_root tar -C "$rootfs" -c . | docker import \
        -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        -c 'ENV LANG=C.UTF-8' \
        -c 'CMD ["python3"]' \
        -m "Debian 12 python3 (3.11) built by kennel scripts/setup.sh; $extra local CA certificate(s)" \
        - "$SUBSTITUTE_BASE" >/dev/null
    as_root rm -rf "$rootfs"
    say "base image: built $SUBSTITUTE_BASE ($(docker image inspect -f '{{.Size}}' "$SUBSTITUTE_BASE" | awk '{printf "%d MB", $1/1e6}'), $extra local CA certificate(s))"
}

# Deploy tests push to a real registry (distribution 2.8) that they start on a free port themselves.
step_registry() {
    if command -v docker-registry >/dev/null && command -v htpasswd >/dev/null; then
        say "local registry: docker-registry and htpasswd present"
        return
    fi
    if ! command -v apt-get >/dev/null; then
        say "local registry: no docker-registry and no apt-get; the registry push test will be skipped"
        return
    fi
    say "local registry: installing Debian's docker-registry and apache2-utils (htpasswd)"
    apt_install docker-registry apache2-utils
    # The package may start its own service on :5000; the tests start theirs on free ports instead.
    as_root pkill -x docker-registry 2>/dev/null || true
}

# ensure_venv LABEL DIR REQUIREMENTS [FILE...]: a virtual environment at DIR with REQUIREMENTS installed,
# reinstalled only when REQUIREMENTS or one of the extra FILEs it depends on has changed since.
ensure_venv() {
    local label=$1 dir=$2 req=$3 stamp="$2/.requirements.sha256" want
    want=$(cat "${@:3}" | sha256sum | cut -d' ' -f1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        say "$label: $dir matches $(basename "$req"), reused"
        return
    fi
    say "$label: installing $(basename "$req") into $dir"
    [ -x "$dir/bin/python" ] || "$PYTHON" -m venv "$dir"
    # The machine's pip config may name local wheel folders that do not exist; drop pip's warnings about them.
    "$dir/bin/python" -m pip install -q --disable-pip-version-check -r "$req" 2>&1 \
        | { grep -v "is ignored: it is neither a file nor a directory" || true; }
    printf '%s\n' "$want" >"$stamp"
    say "$label: ready"
}

# requirements-dev.txt includes the images' locks (-r containers/*/requirements.txt). The venv also sees
# the repository's own packages, as a develop install would: the root's (deploy, bench, images,
# kennel_common, kennel_proxy) and the images' (kennel_serve, kennel_train), so `python -m bench.serve` or
# `python -m deploy` needs no PYTHONPATH.
step_venv() {
    ensure_venv "host venv" "$VENV" "$ROOT/requirements-dev.txt" "$ROOT"/containers/*/requirements.txt
    local site
    site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    printf '%s\n' "$ROOT" "$ROOT/containers/serve" "$ROOT/containers/train" >"$site/kennel.pth"
}

# The SDK's 2.x releases cap protobuf, packaging and attrs below the images' locks, so it gets its own
# environment; tests/sdk/ runs it there, with scripts/docker-compose first on PATH.
step_sdk() { ensure_venv "sdk venv" "$SDK_VENV" "$ROOT/requirements-sdk.txt"; }

# The browser tests (tests/browser/) drive Debian's Chromium through Playwright, whose own browser download
# cannot work without its CDN, and check the page with axe-core from npm, kept in .kennel/axe for them only.
AXE_VERSION=4.14.1
step_browser() {
    if command -v chromium >/dev/null; then
        say "browser: chromium present ($(chromium --version 2>/dev/null | awk '{print $2}'))"
        return
    fi
    say "browser: installing Debian's chromium"
    apt_install chromium
    say "browser: installed ($(chromium --version 2>/dev/null | awk '{print $2}'))"
}

step_axe() {
    local axe="$STATE/axe/node_modules/axe-core"
    if [ -f "$axe/axe.min.js" ] && grep -q "\"version\": \"$AXE_VERSION\"" "$axe/package.json"; then
        say "axe-core: $AXE_VERSION in $STATE/axe, reused"
        return
    fi
    command -v npm >/dev/null || apt_install npm
    npm install --prefix "$STATE/axe" --no-save --no-audit --no-fund --loglevel=error "axe-core@$AXE_VERSION" >/dev/null
    say "axe-core: installed $AXE_VERSION into $STATE/axe"
}

# The benchmarks' load generator (make bench and the bench/ scripts): wrk speaks HTTP/1.1 and keeps its
# connections open, as production clients do. Not part of `all`: the tests do not need it.
step_loadgen() {
    if command -v wrk >/dev/null; then
        say "load generator: wrk present"
        return
    fi
    say "load generator: installing Debian's wrk"
    apt_install wrk
}

case "${1:-all}" in
    all) step_engine; step_compose; step_base; step_registry; step_venv; step_sdk; step_browser; step_axe ;;
    engine | compose | base | registry | venv | sdk | browser | axe | loadgen) "step_$1" ;;
    *) die "unknown step '$1' (engine | compose | base | registry | venv | sdk | browser | axe | loadgen)" ;;
esac
