# Sourced first by the CLI tests (tests/cli/*.sh) with the qaft binary as $1. Sets
#   qaft   the binary (absolute), repo  the repository root,
#   tmp    a fresh temporary directory, removed on exit unless KEEP=1,
#   pids   background processes (servers) to kill on exit — append to it,
# reports the failing line of an unexpected error, and defines
#   fail MESSAGE   print FAIL: MESSAGE (and the tail of $tmp/serve.log when there is one), exit 1;
#   q ARGS...      qaft --log-level warn ARGS...
qaft="$(realpath "$1")"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
tmp=$(mktemp -d)
pids=()
cli_cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  [ -n "${KEEP:-}" ] || rm -rf "$tmp"
}
trap cli_cleanup EXIT
trap 'echo "FAIL: line $LINENO: $BASH_COMMAND (exit $?)" >&2' ERR
fail() { echo "FAIL: $*" >&2; [ -f "$tmp/serve.log" ] && tail -n 20 "$tmp/serve.log" >&2; exit 1; }
q() { "$qaft" --log-level warn "$@"; }
