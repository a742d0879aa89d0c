#!/usr/bin/env bash
# Builds and runs the libFuzzer targets (docs/reliability.md, Fuzzing and input limits).
#
#   tests/fuzz/run.sh build  [--build DIR] [--source DIR]
#   tests/fuzz/run.sh TARGET [--build DIR] [--source DIR] [--seconds N | --runs N] [--keep]
#                            [-- LIBFUZZER_FLAGS...]
#
# `build` configures (once) and builds the clang sub-build in DIR (default <source>/build/fuzz):
#   cmake -S <source> -B DIR -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_C_COMPILER=clang -DARCEUS_FUZZ=ON
# which holds only the fuzz targets and the torch-free libraries they drive, all compiled with
# AddressSanitizer and UndefinedBehaviorSanitizer (ccache when installed; never torch).
# TARGET (rest_body, config, idx, wire, checkpoint) builds fuzz_TARGET if needed, then runs it
# over tests/fuzz/corpus/TARGET (read-only: every file, the regression-* inputs included, runs
# first) and new inputs for N seconds (default 30; --runs N: N new inputs instead), with
# -rss_limit_mb=2048 -timeout=10. New corpus inputs and any crash go to a temporary directory,
# removed on success unless --keep.
#
# Exit: 0 pass; 1 a crash, sanitizer report, property violation, timeout or out-of-memory (the
# input's path is printed: fix the cause, then keep the input as
# tests/fuzz/corpus/TARGET/regression-<what>); 77 skipped (no clang++ able to build a libFuzzer
# program with ASan and UBSan: Debian's clang, libclang-rt-14-dev and libfuzzer-14-dev), with
# the reason printed.
set -euo pipefail

SKIP=77
here=$(cd "$(dirname "$0")" && pwd)
source_dir=$(cd "$here/../.." && pwd)
build_dir=""
seconds=30
runs=""
keep=0
target=${1:-}
[ -n "$target" ] || { sed -n '2,22p' "$0"; exit 2; }
shift
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build_dir=$2; shift 2 ;;
    --source) source_dir=$(cd "$2" && pwd); shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    --) shift; extra=("$@"); break ;;
    *) echo "[fuzz] unknown argument '$1'" >&2; exit 2 ;;
  esac
done
build_dir=${build_dir:-$source_dir/build/fuzz}
corpus_root=$source_dir/tests/fuzz/corpus

# The toolchain: a libFuzzer program with both sanitizers must compile, link and run.
probe() {
  command -v clang++ > /dev/null || { echo "SKIPPED: no clang++ (Debian package clang)"; return 1; }
  local dir
  dir=$(mktemp -d "${TMPDIR:-/tmp}/arceus-fuzz-probe.XXXXXX")
  printf '%s\n' '#include <cstddef>' '#include <cstdint>' \
    'extern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }' > "$dir/p.cpp"
  if ! clang++ -fsanitize=fuzzer,address,undefined "$dir/p.cpp" -o "$dir/p" 2> "$dir/err" ||
     ! "$dir/p" -runs=1 > /dev/null 2>&1; then
    echo "SKIPPED: clang++ cannot build a libFuzzer program with -fsanitize=fuzzer,address,undefined" \
         "(Debian packages libclang-rt-14-dev and libfuzzer-14-dev): $(head -c 300 "$dir/err")"
    rm -rf "$dir"
    return 1
  fi
  rm -rf "$dir"
}

build() {  # [target]: configure once, then build the target (default: all of them)
  mkdir -p "$build_dir"
  if [ ! -f "$build_dir/CMakeCache.txt" ]; then
    local gen=()
    if command -v ninja > /dev/null; then gen=(-G Ninja); fi
    echo "[fuzz] configuring the clang sub-build in $build_dir"
    cmake -S "$source_dir" -B "$build_dir" "${gen[@]}" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_C_COMPILER=clang \
      -DARCEUS_FUZZ=ON > "$build_dir/fuzz-configure.log" 2>&1 || {
      cat "$build_dir/fuzz-configure.log"
      echo "[fuzz] FAILED: configuring $build_dir"
      return 1
    }
  fi
  cmake --build "$build_dir" --target "${1:-fuzz_all}" -j "$(nproc)"
}

probe || exit $SKIP
if [ "$target" = build ]; then
  build
  exit 0
fi

corpus=$corpus_root/$target
[ -f "$here/fuzz_$target.cpp" ] || { echo "[fuzz] no target '$target' (tests/fuzz/fuzz_$target.cpp)" >&2; exit 2; }
[ -d "$corpus" ] || { echo "[fuzz] FAILED: no corpus directory $corpus"; exit 1; }
build "fuzz_$target" > "$build_dir/fuzz-build-$target.log" 2>&1 || { cat "$build_dir/fuzz-build-$target.log"; exit 1; }

out=$(mktemp -d "${TMPDIR:-/tmp}/arceus-fuzz-$target.XXXXXX")
mkdir -p "$out/new"
limit=(-max_total_time="$seconds")
if [ -n "$runs" ]; then limit=(-runs="$runs"); fi
dict=()
if [ -f "$here/$target.dict" ]; then dict=(-dict="$here/$target.dict"); fi
echo "[fuzz] $target: $(find "$corpus" -type f | wc -l) corpus inputs, ${runs:+$runs runs}${runs:-$seconds s}; findings in $out"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
if [ -f "$here/lsan.supp" ]; then export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$here/lsan.supp}; fi
set +e
(cd "$out" && TMPDIR="$out" "$build_dir/tests/fuzz/fuzz_$target" "${limit[@]}" -rss_limit_mb=2048 -timeout=10 \
   -error_exitcode=1 -timeout_exitcode=1 -artifact_prefix="$out/" -print_final_stats=1 "${dict[@]}" \
   "${extra[@]}" "$out/new" "$corpus") > "$out/log" 2>&1
rc=$?
set -e
grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::new_units_added|stat::peak_rss_mb|Done )' "$out/log" || true
found=$(find "$out" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \
          -o -name 'slow-unit-*' \) | sort)
if [ $rc -ne 0 ] || [ -n "$(echo "$found" | grep -v slow-unit || true)" ]; then
  tail -n 60 "$out/log"
  echo "[fuzz] FAILED: fuzz_$target exited $rc; the log is $out/log"
  for f in $found; do echo "[fuzz] input: $f"; done
  echo "[fuzz] fix the cause, then keep the input as $corpus/regression-<what>"
  exit 1
fi
echo "[fuzz] $target passed: $(find "$out/new" -type f | wc -l) new corpus inputs"
if [ $keep -eq 1 ]; then echo "[fuzz] kept $out"; else rm -rf "$out"; fi
