#!/usr/bin/env bash
# CTest wrapper of the browser tests (tests/browser/*.mjs, playwright-core driving Debian's
# Chromium). Exit 77 (SKIPPED, with the reason) when node, Chromium or playwright-core is
# missing: scripts/install-deps installs all three.
#   run.sh dashboard --bin build/arceus    the page of `mpirun -np 3 arceus serve`, driven by its buttons
#   run.sh report --bin build/arceus       `arceus report` of a finished run, opened from file://
# Screenshots go to the build tree's tests/browser-artifacts/.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
what="${1:?usage: run.sh dashboard|report --bin ARCEUS}"
shift
bin=""
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin="$2"; shift 2 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -x "$bin" ] || { echo "run.sh: no arceus binary at '$bin'" >&2; exit 1; }
command -v node > /dev/null || { echo "SKIPPED: no node on PATH (scripts/install-deps installs nodejs)"; exit 77; }
[ -x "${ARCEUS_CHROMIUM:-/usr/bin/chromium}" ] ||
  { echo "SKIPPED: no Chromium at /usr/bin/chromium (Debian package chromium; scripts/install-deps installs it)"; exit 77; }
[ -d "$here/node_modules/playwright-core" ] ||
  { echo "SKIPPED: tests/browser/node_modules/playwright-core is missing (scripts/install-deps runs npm ci there)"; exit 77; }

artifacts="$(pwd)/browser-artifacts"
work="$(mktemp -d /tmp/arceus-browser.XXXXXX)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$artifacts"
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi

case "$what" in
  dashboard)
    exec node "$here/dashboard.mjs" --arceus "$bin" --mpirun "$here/../../scripts/mpirun" --workdir "$work" \
      --artifacts "$artifacts"
    ;;
  report)
    # A finished 2-epoch run (one process), its report, then the browser.
    (cd "$work" && "$bin" train "$here/../configs/e2e_synthetic.yaml" --quiet --set output.dir="$work/run" > train.log)
    "$bin" report "$work/run" -o "$work/report.html"
    # Every step's loss is in the HTML (as summary.json, written apart from metrics.h5, has it).
    python3 - "$work/run/summary.json" "$work/report.html" "$work/expected.json" <<'PY'
import json, sys
summary = json.load(open(sys.argv[1]))
html = open(sys.argv[2]).read()
losses = [l for e in summary["epochs"] for l in e["step_losses"]]
missing = [l for l in losses if json.dumps(l) not in html]
if not losses or missing:
    sys.exit(f"report.html lacks {len(missing)} of {len(losses)} step losses, e.g. {missing[:3]}")
json.dump({"steps": [{"loss": l} for l in losses]}, open(sys.argv[3], "w"))
print(f"report.html holds all {len(losses)} step losses of summary.json")
PY
    cp "$work/report.html" "$artifacts/report.html"
    exec node "$here/report.mjs" --report "$work/report.html" --metrics-json "$work/expected.json" --artifacts "$artifacts"
    ;;
  *) echo "run.sh: unknown test '$what' (dashboard or report)" >&2; exit 2 ;;
esac
