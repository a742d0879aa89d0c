# Sourced by tests/netns/cluster-test.sh and replicas-test.sh: what every test on the simulated
# cluster (tests/netns/cluster) needs before its own checks. Set before sourcing: NAME (the
# log prefix and work directory name), SKIP (77), here (tests/netns), BIN (the arceus binary).

log() { echo "[$NAME] $*"; }
skip() { echo "[$NAME] SKIPPED: $*"; exit "$SKIP"; }
fail() { echo "[$NAME] FAIL: $*" >&2; exit 1; }

# Root, the commands given, the binary: a skip (or, for the binary, a failure) naming what is missing.
netns_require() {
  local why=$1 c
  shift
  [ "$(id -u)" -eq 0 ] || skip "needs root ($why); run as root"
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 || skip "command '$c' not found"
  done
  [ -x "$BIN" ] || fail "arceus binary '$BIN' not found (build it: scripts/build)"
}

# One netns test or benchmark at a time on a machine (the namespace names are fixed): the lock
# on fd 9, then a work directory ($work) and the exit trap that removes the cluster, and the
# work directory when the test passed.
netns_begin() {
  local lockdir=/run/lock
  [ -d "$lockdir" ] || lockdir=/tmp
  exec 9>"$lockdir/arceus-netns.lock"
  flock -w 120 9 || fail "another netns test or benchmark holds $lockdir/arceus-netns.lock"
  export ARCEUS_NETNS_PREFIX=arceus-h ARCEUS_NETNS_SUBNET=10.77.0
  work=$(mktemp -d "/tmp/arceus-$NAME.XXXXXX")
  export ARCEUS_NETNS_TMP=$work/tmp
  trap netns_on_exit EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}
netns_on_exit() {
  local status=$?
  "$here/cluster" down
  if [ "$status" -eq 0 ]; then rm -rf "$work"; else echo "[$NAME] work directory kept: $work"; fi
  exit "$status"
}

# tests/netns/cluster up with these arguments; its skip (77) passed on, any other failure fails.
netns_up() {
  local rc=0
  "$here/cluster" up "$@" || rc=$?
  [ "$rc" -eq 0 ] || { [ "$rc" -eq "$SKIP" ] && exit "$SKIP"; fail "cluster up failed (status $rc)"; }
}
