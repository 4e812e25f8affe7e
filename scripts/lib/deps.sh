# Installs the Debian packages Drover needs when they are missing (as root, through
# apt-get), or says exactly what to install. Sourced by scripts/up and scripts/test.
#
#   ensure_deps build      protoc (etcd-client's build)
#   ensure_deps runtime    runc, busybox-static (the agent's drivers and test rootfs)
#   ensure_deps test       etcd (store conformance suite, benchmarks), dockerd (the
#                          docker driver's tests), docker-registry and skopeo (a real
#                          registry the runc driver pulls from in tests)

declare -A DROVER_PKG_FOR=(
  [protoc]=protobuf-compiler
  [etcd]=etcd-server
  [runc]=runc
  [busybox]=busybox-static
  [dockerd]=docker.io
  [docker-registry]=docker-registry
  [skopeo]=skopeo
)

deps_for() {
  case "$1" in
    build) echo protoc ;;
    runtime) echo runc busybox ;;
    test) echo etcd dockerd docker-registry skopeo ;;
    *) echo "deps.sh: unknown dependency group '$1'" >&2; return 2 ;;
  esac
}

ensure_deps() {
  local missing=() cmd group
  for group in "$@"; do
    for cmd in $(deps_for "$group"); do
      command -v "$cmd" >/dev/null 2>&1 || missing+=("${DROVER_PKG_FOR[$cmd]}")
    done
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "drover: missing Debian packages: ${missing[*]}" >&2
    echo "drover: install them with: sudo apt-get install -y ${missing[*]}" >&2
    return 1
  fi
  echo "drover: installing ${missing[*]} (apt-get)…" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 || { echo "drover: apt-get update failed" >&2; return 1; }
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 \
    || { echo "drover: apt-get install ${missing[*]} failed" >&2; return 1; }
  for group in "$@"; do
    for cmd in $(deps_for "$group"); do
      command -v "$cmd" >/dev/null 2>&1 || { echo "drover: $cmd still missing after installing ${DROVER_PKG_FOR[$cmd]}" >&2; return 1; }
    done
  done
}
