#!/usr/bin/env bash
# CTest dashboard_typecheck: `tsc --noEmit` over the dashboard's modules (launcher/dashboard/*.js,
# each `// @ts-check` with JSDoc types; launcher/dashboard/tsconfig.json: checkJs, strict). Fails
# on any type error, printing it. typescript is pinned by tests/browser/package-lock.json beside
# playwright-core (scripts/install-deps runs npm ci here). Exit 77 (SKIPPED, with the reason)
# when node or typescript is missing.
#   typecheck.sh [DIR]    DIR: the tsconfig.json's folder (launcher/dashboard)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
project="${1:-$here/../../launcher/dashboard}"
command -v node > /dev/null || { echo "SKIPPED: no node on PATH (scripts/install-deps installs nodejs)"; exit 77; }
tsc="$here/node_modules/typescript/bin/tsc"
[ -f "$tsc" ] ||
  { echo "SKIPPED: tests/browser/node_modules/typescript is missing (scripts/install-deps runs npm ci there)"; exit 77; }
[ -f "$project/tsconfig.json" ] || { echo "typecheck.sh: no tsconfig.json in $project" >&2; exit 2; }
echo "tsc $(node "$tsc" --version | sed 's/^Version //') --noEmit -p $project"
if node "$tsc" --noEmit --pretty false -p "$project"; then
  echo "dashboard_typecheck: no type error in $(find "$project" -maxdepth 1 -name '*.js' | wc -l) modules"
else
  status=$?
  echo "dashboard_typecheck: FAILED: tsc found type errors (above)" >&2
  exit "$status"
fi
