#!/usr/bin/env bash
# Pinned developer tools, built from source with `go install` (no prebuilt
# downloads). Binaries live in a per-version directory under the shared cache so
# several clones, branches and version bumps can coexist without rebuilding.
#
#   tools.sh ensure [name...]   build missing tools (default: all) and kcat
#   tools.sh path NAME          print the binary path (exit 1 if not built yet)
#   tools.sh bin-dir            print a PATH fragment with every tool directory
#   tools.sh list               print name, version, path and state of each tool
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/versions.env
source "$SCRIPT_DIR/versions.env"

FERRY_CACHE=${FERRY_CACHE:-$HOME/.cache/ferry}
TOOLS_DIR=$FERRY_CACHE/tools

# Keep the order stable: `ensure` builds in this order and the cheapest tools
# come first so a failure in the 3-minute temporal build does not hide them.
TOOL_NAMES=(grpcurl workflowcheck buf golangci-lint helm temporal)

tool_pkg() {
  case $1 in
    temporal) echo github.com/temporalio/cli/cmd/temporal ;;
    buf) echo github.com/bufbuild/buf/cmd/buf ;;
    grpcurl) echo github.com/fullstorydev/grpcurl/cmd/grpcurl ;;
    golangci-lint) echo github.com/golangci/golangci-lint/v2/cmd/golangci-lint ;;
    workflowcheck) echo go.temporal.io/sdk/contrib/tools/workflowcheck ;;
    helm) echo helm.sh/helm/v4/cmd/helm ;;
    *) return 1 ;;
  esac
}

tool_version() {
  case $1 in
    temporal) echo "$TEMPORAL_CLI_VERSION" ;;
    buf) echo "$BUF_VERSION" ;;
    grpcurl) echo "$GRPCURL_VERSION" ;;
    golangci-lint) echo "$GOLANGCI_LINT_VERSION" ;;
    workflowcheck) echo "$WORKFLOWCHECK_VERSION" ;;
    helm) echo "$HELM_VERSION" ;;
    *) return 1 ;;
  esac
}

die() {
  echo "tools.sh: $*" >&2
  exit 1
}

check_name() {
  tool_pkg "$1" >/dev/null || die "unknown tool '$1' (known: ${TOOL_NAMES[*]})"
}

tool_dir() { echo "$TOOLS_DIR/$1-$(tool_version "$1")"; }
tool_path() { echo "$(tool_dir "$1")/$1"; }

now() { echo "${EPOCHREALTIME/./}"; }
elapsed() { # start_us -> "12.3s"
  local us=$(($(now) - $1))
  printf '%d.%01ds' $((us / 1000000)) $((us % 1000000 / 100000))
}

ensure_tool() {
  local name=$1 pkg version dir bin lock start tmp
  pkg=$(tool_pkg "$name")
  version=$(tool_version "$name")
  dir=$(tool_dir "$name")
  bin=$dir/$name
  if [[ -x $bin ]]; then
    echo "ok      $name $version ($bin)"
    return 0
  fi
  mkdir -p "$TOOLS_DIR"
  lock=$TOOLS_DIR/.$name-$version.lock
  # Another clone or CI step may be building the same tool; the lock makes the
  # second caller wait and then reuse the result instead of building it twice.
  exec {lock_fd}>"$lock"
  flock "$lock_fd"
  if [[ -x $bin ]]; then
    exec {lock_fd}>&-
    echo "ok      $name $version ($bin, built concurrently)"
    return 0
  fi
  echo "build   $name $version: go install $pkg@$version"
  start=$(now)
  tmp=$(mktemp -d "$TOOLS_DIR/.build-$name.XXXXXX")
  # GOWORK=off and a neutral working directory keep the repo's go.work out of
  # the build; installing into a temp GOBIN and renaming means a half-written
  # binary is never mistaken for a finished one.
  if ! (cd "$tmp" && GOWORK=off GOTOOLCHAIN=local GOBIN="$tmp" go install "$pkg@$version"); then
    rm -rf "$tmp"
    exec {lock_fd}>&-
    die "building $name $version failed"
  fi
  mkdir -p "$dir"
  mv -f "$tmp/$name" "$bin"
  rm -rf "$tmp"
  exec {lock_fd}>&-
  echo "built   $name $version in $(elapsed "$start") ($bin)"
}

ensure_kcat() {
  if command -v kcat >/dev/null 2>&1; then
    echo "ok      kcat ($(command -v kcat))"
    return 0
  fi
  # kcat is the Kafka CLI client used by tests and demos; Debian packages it.
  command -v apt-get >/dev/null 2>&1 || die "kcat is missing and apt-get is not available; install kcat"
  local sudo=()
  ((EUID == 0)) || sudo=(sudo)
  echo "install kcat (apt-get)"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq kcat >/dev/null
  echo "ok      kcat ($(command -v kcat))"
}

cmd_ensure() {
  local names=("$@") name
  ((${#names[@]})) || names=("${TOOL_NAMES[@]}" kcat)
  for name in "${names[@]}"; do
    if [[ $name == kcat ]]; then
      ensure_kcat
      continue
    fi
    check_name "$name"
    ensure_tool "$name"
  done
}

cmd_path() {
  (($# == 1)) || die "usage: tools.sh path NAME"
  check_name "$1"
  local bin
  bin=$(tool_path "$1")
  echo "$bin"
  [[ -x $bin ]] || {
    echo "tools.sh: $1 is not built yet; run: $0 ensure $1" >&2
    return 1
  }
}

cmd_bin_dir() {
  local name dirs=()
  for name in "${TOOL_NAMES[@]}"; do
    dirs+=("$(tool_dir "$name")")
  done
  local IFS=:
  echo "${dirs[*]}"
}

cmd_list() {
  local name bin state
  for name in "${TOOL_NAMES[@]}"; do
    bin=$(tool_path "$name")
    state=missing
    [[ -x $bin ]] && state=installed
    printf '%-14s %-9s %-10s %s\n' "$name" "$(tool_version "$name")" "$state" "$bin"
  done
}

usage() {
  sed -n '2,10s/^# \{0,1\}//p' "$0"
}

main() {
  local cmd=${1:-}
  (($#)) && shift
  case $cmd in
    ensure) cmd_ensure "$@" ;;
    path) cmd_path "$@" ;;
    bin-dir) cmd_bin_dir ;;
    list) cmd_list ;;
    -h | --help | help) usage ;;
    *)
      usage >&2
      exit 2
      ;;
  esac
}

main "$@"
