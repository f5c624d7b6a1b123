#!/usr/bin/env bash
# tools/sanitize.sh MODE [extra pytest args]
#
# Builds fastnn with one dynamic-analysis tool, proves the tool is wired in with the
# deliberate-bug canaries (csrc/testing/canaries.cpp), then runs the tests under it.
# The commands follow shared/RELIABILITY.md section 8 (verified on Debian 12, gcc 12, clang 14).
#
#   asan      gcc ASan+UBSan (Debug, -O1), the whole suite per FASTNN_SIMD x OMP_NUM_THREADS
#             (RELIABILITY 8.1, test M1). Matrix: SANITIZE_SIMD (default "generic avx2", plus
#             avx512 when this CPU has it; "auto" leaves FASTNN_SIMD unset), SANITIZE_THREADS
#             (default "1 2").
#             SANITIZE_VENV=path: build into that venv instead of .venv-<tool> (used by .ci/run).
#   lsan      the same build, the whole suite with detect_leaks=1 and tools/lsan.supp (8.2, M4).
#   valgrind  memcheck over the kernel tests on the auto and generic paths, plus proof that a
#             forced avx512 gives the clear error, not SIGILL (8.3, M5).
#   fuzz      clang-14 ASan + atheris over every tests/fuzz/fuzz_*.py for FUZZ_SECONDS (default 60)
#             each (8.4, M6/M7). FUZZ_TARGETS overrides the list of harness files.
#   tsan      gcc TSan, OMP_NUM_THREADS=1, tests/runtime/test_concurrency.py and the Python-thread
#             tests of tests/runtime/test_reliability.py, with tools/tsan.supp (8.5, C2).
#
# Each tool has its own venv (.venv-<tool>; lsan shares .venv-asan and build/asan) and build folder
# (build/<tool>), so a sanitized _core never shadows the normal one. Logs, one folder of
# sanitizer report files per stage, and summary.txt go to build/sanitize/<mode>/.
# Exit status: 0 only when every canary fired and every stage had rc 0 and no report.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

usage() { echo "usage: tools/sanitize.sh asan|lsan|valgrind|fuzz|tsan [extra pytest args]" >&2; exit 2; }
[ $# -ge 1 ] || usage
MODE=$1
shift
PYTEST_EXTRA=("$@")
# Extra args that name tests (a path, or path::test) replace the mode's default test paths.
EXTRA_NAMES_TESTS=0
for arg in "$@"; do
  [ -e "${arg%%::*}" ] && EXTRA_NAMES_TESTS=1
done
# tests_or DEFAULT...: the test paths to run.
tests_or() { [ "$EXTRA_NAMES_TESTS" -eq 1 ] || printf '%s\n' "$@"; }
case "$MODE" in asan | lsan | valgrind | fuzz | tsan) ;; *) usage ;; esac

LOGDIR=$ROOT/build/sanitize/$MODE
mkdir -p "$LOGDIR"
: >"$LOGDIR/summary.txt"
FAILED=0

say() { printf '[sanitize %s] %s\n' "$MODE" "$*" | tee -a "$LOGDIR/summary.txt"; }
die() { say "FAIL: $*"; exit 1; }

# ------------------------------------------------------------------------------ building

# venv_with NAME PIP_ARGS...: create .venv-NAME once and install what the build and the
# tests need. The build runs with --no-build-isolation (8.x: keeps our -C flags in effect and
# does not refetch the build requirements), so the build requirements come first.
venv_with() {
  local name=$1
  shift
  # SANITIZE_VENV: use an existing venv instead (CI reuses .venv-ci, whose dependencies are
  # already installed; the sanitized fastnn then replaces the normal one there).
  VENV=$ROOT/.venv-$name
  [ -z "${SANITIZE_VENV:-}" ] || VENV=$(cd "$SANITIZE_VENV" && pwd)
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  # shellcheck disable=SC1091
  . "$VENV/bin/activate"
  python -m pip install -q --disable-pip-version-check pybind11 scikit-build-core cmake ninja "$@" \
    >"$LOGDIR/pip.log" 2>&1 || { tail -40 "$LOGDIR/pip.log"; die "pip install failed (log: $LOGDIR/pip.log)"; }
}

# build_fastnn BUILD_DIR BUILD_TYPE CXX_FLAGS LINKER_FLAGS EXTRAS: install fastnn (with its
# pyproject dependencies and EXTRAS) into the active venv, canaries compiled in.
build_fastnn() {
  local dir=$1 type=$2 cxxflags=$3 ldflags=$4 extras=$5
  # A build folder configured by another interpreter caches that venv's paths (pybind11_DIR,
  # Python_*): start it afresh rather than mix two environments.
  if [ -f "$dir/.skbuild-info.json" ] && ! grep -q "\"$VENV/bin/python" "$dir/.skbuild-info.json"; then
    say "$dir was configured by another Python; removing it"
    rm -rf "$dir"
  fi
  local t0=$SECONDS
  python -m pip install -q --disable-pip-version-check --no-build-isolation \
    -Ccmake.build-type="$type" \
    -Ccmake.define.CMAKE_CXX_FLAGS="$cxxflags" \
    -Ccmake.define.CMAKE_SHARED_LINKER_FLAGS="$ldflags" \
    -Ccmake.define.FASTNN_SANITIZER_CANARIES=ON \
    -Cbuild-dir="$dir" ".$extras" >"$LOGDIR/build.log" 2>&1 ||
    { tail -40 "$LOGDIR/build.log"; die "build failed (log: $LOGDIR/build.log)"; }
  # Locate the .so without importing it: a sanitized _core aborts at import until LD_PRELOAD
  # is set (8.1), and the preload must not leak into pip or the compiler.
  SO=$(python -c "import sysconfig, glob; print(glob.glob(sysconfig.get_paths()['platlib'] + '/fastnn/_core*.so')[0])")
  say "built $(basename "$SO") in $dir ($type) in $((SECONDS - t0)) s"
}

# require_symbols PATTERN...: the instrumentation really is in the .so (checked before the
# canaries, whose failure would otherwise be harder to read).
require_symbols() {
  local sym undefined
  # (into a variable: `nm | grep -q` fails under pipefail when grep exits early and nm gets SIGPIPE)
  undefined=$(nm -D --undefined-only "$SO")
  for sym in "$@"; do
    grep -q "$sym" <<<"$undefined" || die "$(basename "$SO") has no $sym: sanitizer not wired in"
  done
}

# ------------------------------------------------------------------------------ running

# The sanitizer runtime to preload into the Python processes under test (set per mode).
# Never exported to the whole script: tail/grep/find would then run with it too, and with
# detect_leaks=1 their own exit-time leaks would fail this script.
PRELOAD=""
preloaded() {
  if [ -n "$PRELOAD" ]; then env LD_PRELOAD="$PRELOAD" "$@"; else "$@"; fi
}

# run_stage LABEL CMD...: run CMD (environment already exported), log it, count reports.
# ASan/LSan/TSan reports are written to files under REPORTS (log_path=..., one file per
# process) so a report from a subprocess whose output a test captured is still counted.
# UBSan's stay on stderr (see mode_asan): in a captured child they fail that child (rc 1).
run_stage() {
  local label=$1
  shift
  local log=$LOGDIR/$label.log t0=$SECONDS rc=0
  set +e
  preloaded "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  set -e
  local files reports counts f others=0
  # log_exe_name=1 names each report file <tool>.<executable>.<pid>. Reports of children that
  # are not Python (git, started by pytest-benchmark; mpiexec) come from code that is not
  # fastnn's and that merely inherited the preload: listed, kept aside, not counted.
  for f in $(find "$REPORTS" -maxdepth 1 -type f -size +0 -regex '.*/[a-z]+san\.[^/]*\.[0-9]+' 2>/dev/null); do
    case "$(basename "$f")" in
      *san.python*) ;;
      *)
        mkdir -p "$REPORTS/not-python"
        mv "$f" "$REPORTS/not-python/"
        others=$((others + 1))
        ;;
    esac
  done
  [ "$others" -eq 0 ] || say "$label: $others report file(s) of non-Python child processes set aside in $REPORTS/not-python: $(ls "$REPORTS/not-python" | tr '\n' ' ')"
  # With allocator_may_return_null=1 a request too large to allocate becomes MemoryError (the
  # tested behaviour) and ASan logs one "failed to allocate" WARNING for it: a file holding
  # nothing else is the expected refusal, kept aside and counted, not a report.
  local refused=0
  for f in $(find "$REPORTS" -maxdepth 1 -type f -size +0 2>/dev/null); do
    if ! grep -qv 'WARNING: AddressSanitizer failed to allocate 0x[0-9a-f]* bytes$' "$f"; then
      mkdir -p "$REPORTS/refused-allocations"
      mv "$f" "$REPORTS/refused-allocations/"
      refused=$((refused + 1))
    fi
  done
  [ "$refused" -eq 0 ] || say "$label: $refused process(es) had an allocation refused (MemoryError, as tested): $(cat "$REPORTS"/refused-allocations/* | grep -o '0x[0-9a-f]* bytes' | tr '\n' ' ')"
  files=$(find "$REPORTS" -maxdepth 1 -type f -size +0 2>/dev/null | wc -l)
  # One headline per report: ASan/LSan/UBSan/TSan, and memcheck's error kinds.
  reports=$(find "$log" "$REPORTS" -maxdepth 1 -type f -size +0 -exec cat {} + 2>/dev/null | grep -cE \
    'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|WARNING: ThreadSanitizer|^==[0-9]+== (Invalid|Conditional|Use of uninitialised|Syscall param|Mismatched|Source and destination|Argument|Process terminating|.* definitely lost in loss record)' || true)
  # pytest's closing line, or libFuzzer's "#runs DONE cov: ..." line.
  counts=$({ grep -E '[0-9]+ (passed|failed|skipped|errors?|deselected)' "$log" | grep -E ' in [0-9.]+s' ||
    grep -E '^#[0-9]+[[:space:]]+DONE' "$log"; } | tail -1 || true)
  say "$label: rc=$rc, ${counts:-no summary line}, sanitizer reports: $reports (in $files report file(s)), $((SECONDS - t0)) s"
  if [ "$rc" -ne 0 ] || [ "$reports" -ne 0 ] || [ "$files" -ne 0 ]; then
    FAILED=1
    find "$REPORTS" -maxdepth 1 -type f -size +0 -print -exec head -60 {} \; 2>/dev/null || true
  fi
}

# new_reports LABEL: an empty report folder for the next stage, as an absolute prefix
# (tests chdir into tmp_path; sanitizers append .<pid>).
new_reports() {
  REPORTS=$LOGDIR/reports-$1
  rm -rf "$REPORTS"
  mkdir -p "$REPORTS"
}

# canaries: every deliberate bug must be reported, or the whole job is meaningless
# (PyTorch .ci/pytorch/test.sh; RELIABILITY M2). FASTNN_EXPECT_SANITIZERS makes a build that
# lost its flags fail rather than skip.
run_canaries() {
  local expect=$1
  new_reports canaries
  local rc=0
  set +e
  FASTNN_EXPECT_SANITIZERS=$expect preloaded python -m pytest -q -p no:cacheprovider -rs \
    tests/runtime/test_sanitizer_canaries.py >"$LOGDIR/canaries.log" 2>&1
  rc=$?
  set -e
  local line
  line=$(tail -1 "$LOGDIR/canaries.log")
  if [ "$rc" -ne 0 ] || grep -qE '[0-9]+ (failed|error)' <<<"$line"; then
    cat "$LOGDIR/canaries.log"
    die "canaries ($expect): $line -- sanitizer not wired in"
  fi
  say "canaries ($expect): rc=$rc, $line"
}

PYTEST=(python -m pytest -s -q -p no:cacheprovider --durations=15)

# Tests that cannot pass under ASan by design, deselected in asan and lsan modes (measured):
# the RSS-delta tests (ASan's quarantine and redzones grow RSS on purpose) and the RLIMIT_AS
# tests (ASan reserves terabytes of virtual shadow memory, so the capped child dies at
# import). An explicit -k in the extra pytest args replaces this one.
ASAN_INCOMPATIBLE=(-k "not memory_is_flat and not over_2_31 and not far_past_the_memory")

libasan_preload() { echo "$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so)"; }

# gcc 12 ASan+UBSan build, shared by asan and lsan (8.1). Debug keeps asserts; -O1 keeps
# reports readable while the suite stays fast enough.
build_asan() {
  venv_with asan
  build_fastnn build/asan Debug \
    "-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g -O1" \
    "-fsanitize=address,undefined" "[test]"
  require_symbols __asan_report_load __ubsan_handle
  # LD_PRELOAD needs BOTH: without libasan the import fails ("ASan runtime does not come
  # first"); without libstdc++ the first C++ throw aborts with "CHECK failed:
  # asan_interceptors.cpp:320 ... real___cxa_throw != 0" (RELIABILITY 0.5).
  PRELOAD=$(libasan_preload)
}

# ------------------------------------------------------------------------------ modes

mode_asan() {
  build_asan
  # halt_on_error: the first report ends the process; allocator_may_return_null: a huge
  # request becomes MemoryError (a tested behaviour) instead of an ASan abort.
  local asan_base=detect_leaks=0:halt_on_error=1:strict_init_order=1:allocator_may_return_null=1:detect_stack_use_after_return=1
  export ASAN_OPTIONS="$asan_base" UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
  run_canaries address,undefined

  local simds=${SANITIZE_SIMD:-}
  if [ -z "$simds" ]; then
    simds="generic avx2"
    # valgrind and some CPUs lack AVX-512: the avx512 path can only be checked where it runs.
    if grep -qw avx512f /proc/cpuinfo && grep -qw avx512bw /proc/cpuinfo &&
      grep -qw avx512dq /proc/cpuinfo && grep -qw avx512vl /proc/cpuinfo; then
      simds="$simds avx512"
    fi
  fi
  local simd nt
  for simd in $simds; do
    for nt in ${SANITIZE_THREADS:-1 2}; do
      new_reports "simd-$simd-threads-$nt"
      # -s: pytest's capture swallows the report and the run just dies rc=1 (RELIABILITY 0.6).
      # ASan reports go to files (log_path); UBSan's do not (in gcc 12's combined runtime it
      # ignores log_path: checked), they stay on stderr, in the log, and abort the process.
      export ASAN_OPTIONS="$asan_base:log_path=$REPORTS/asan:log_exe_name=1"
      if [ "$simd" = auto ]; then
        run_stage "simd-$simd-threads-$nt" env -u FASTNN_SIMD OMP_NUM_THREADS="$nt" "${PYTEST[@]}" \
          "${ASAN_INCOMPATIBLE[@]}" "${PYTEST_EXTRA[@]}" $(tests_or tests)
      else
        run_stage "simd-$simd-threads-$nt" env FASTNN_SIMD="$simd" OMP_NUM_THREADS="$nt" "${PYTEST[@]}" \
          "${ASAN_INCOMPATIBLE[@]}" "${PYTEST_EXTRA[@]}" $(tests_or tests)
      fi
    done
  done
}

mode_lsan() {
  build_asan
  # Function-level suppressions only: "leak:libpython3" would match every stack and hide
  # the canary too (RELIABILITY 0.7). PYTHONMALLOC=malloc lets LSan see Python's blocks.
  export PYTHONMALLOC=malloc
  export LSAN_OPTIONS="suppressions=$ROOT/tools/lsan.supp:print_suppressions=0"
  export ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1:halt_on_error=1
  export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
  run_canaries address,undefined,leak
  new_reports suite
  export ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=1:halt_on_error=1:log_path=$REPORTS/asan:log_exe_name=1"
  run_stage suite env OMP_NUM_THREADS="${SANITIZE_THREADS:-2}" "${PYTEST[@]}" "${ASAN_INCOMPATIBLE[@]}" \
    "${PYTEST_EXTRA[@]}" $(tests_or tests)
}

VALGRIND_TESTS=(tests/kernels/test_gemm.py tests/kernels/test_dense.py tests/kernels/test_activation.py tests/kernels/test_batchnorm.py
  tests/kernels/test_dropout.py tests/kernels/test_clip.py tests/kernels/test_losses.py tests/kernels/test_optim_kernels.py tests/kernels/test_ops_errors.py)

mode_valgrind() {
  command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind; }
  venv_with valgrind
  # A normal optimised build plus -g (RelWithDebInfo) for line numbers; no sanitizer flags.
  build_fastnn build/valgrind RelWithDebInfo "" "" "[test]"
  # --errors-for-leak-kinds=definite: only "definitely lost" fails; python3.supp is
  # Debian's copy of CPython's Misc/valgrind-python.supp (RELIABILITY 8.3).
  local vg=(valgrind -q --tool=memcheck --num-callers=40 --leak-check=full --show-leak-kinds=definite
    --errors-for-leak-kinds=definite --error-exitcode=99
    --suppressions=/usr/lib/valgrind/python3.supp --suppressions="$ROOT/tools/valgrind-extra.supp")
  # PYTHONMALLOC=malloc: pymalloc's arenas would hide Python's own blocks from memcheck.
  export PYTHONMALLOC=malloc
  FASTNN_CANARY_LAUNCHER="${vg[*]}" run_canaries memcheck

  # memcheck runs ~50x slower than native, so each pass is a subset:
  # - tests/conftest.py's `simd` fixture already runs every kernel test on every available
  #   path in-process (generic and avx2 under valgrind), so the auto pass (startup path
  #   avx2) takes the [avx2-...] cases and the generic pass the [generic-...] ones; the tests
  #   without that fixture run in both passes;
  # - VALGRIND_DESELECT drops the big shapes (the ASan suite runs them all), the torch
  #   cross-checks (torch is not in this venv) and the thread-count sweeps (valgrind
  #   serialises threads anyway).
  local deselect=${VALGRIND_DESELECT-not large and not blocked_sizes and not torch and not 300x257x40 and not million and not thread_count}
  local simd other
  for simd in auto generic; do   # never avx512 here: valgrind hides it from CPUID (RELIABILITY 0.8)
    new_reports "simd-$simd"
    local env_simd=(env -u FASTNN_SIMD)
    other=generic
    [ "$simd" = auto ] || { env_simd=(env FASTNN_SIMD="$simd"); other=avx2; }
    # None of these files starts a subprocess (its child would run un-traced: no --trace-children).
    run_stage "simd-$simd" "${env_simd[@]}" OMP_NUM_THREADS=2 "${vg[@]}" --log-file="$REPORTS/vg.%p" \
      python -m pytest -q -p no:cacheprovider --durations=10 -m "not slow" -k "not $other${deselect:+ and $deselect}" \
      "${PYTEST_EXTRA[@]}" $(tests_or "${VALGRIND_TESTS[@]}")
  done

  # valgrind 3.19 hides AVX-512 in CPUID, so a forced avx512 must be fastnn's clear
  # ImportError (rc 1), never SIGILL (rc 132) nor a memcheck error (rc 99): a free test of
  # "an unsupported request is a clear error" (RELIABILITY N6, M5).
  new_reports avx512-forced
  local out rc=0
  set +e
  out=$(FASTNN_SIMD=avx512 "${vg[@]}" --log-file="$REPORTS/vg.%p" python -c "import fastnn" 2>&1)
  rc=$?
  set -e
  if [ "$rc" -eq 1 ] && grep -q "ImportError: FASTNN_SIMD='avx512'" <<<"$out" &&
    [ "$(find "$REPORTS" -type f -size +0 | wc -l)" -eq 0 ]; then
    say "avx512-forced: rc=1 with the clear error: $(grep ImportError <<<"$out")"
  else
    printf '%s\n' "$out"
    say "avx512-forced: rc=$rc, expected rc=1 and fastnn's ImportError (SIGILL is rc 132)"
    FAILED=1
  fi
}

mode_fuzz() {
  # clang-14 and its ASan/libFuzzer runtimes and OpenMP (RELIABILITY 8.4).
  if ! command -v clang++-14 >/dev/null || [ ! -d /usr/lib/llvm-14/lib/clang/14.0.6/lib/linux ] ||
    [ ! -e /usr/lib/llvm-14/lib/libomp.so ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang-14 libclang-rt-14-dev libomp-14-dev >/dev/null
  fi
  venv_with fuzz atheris pytest
  # No "undefined" here: atheris's runtime is a newer LLVM than clang-14 and the import
  # fails on __ubsan_handle_function_type_mismatch_v1 (8.4); UBSan coverage is in asan mode.
  CC=clang-14 CXX=clang++-14 build_fastnn build/fuzz RelWithDebInfo \
    "-fsanitize=address,fuzzer-no-link -fno-omit-frame-pointer" "-fsanitize=address,fuzzer-no-link" ""
  require_symbols __asan_report_load __sanitizer_cov
  local ap
  ap=$(python -c "import atheris; print(atheris.path())")
  # atheris's ASan+libFuzzer runtime first, libstdc++ for the same reason as in asan mode.
  PRELOAD="$ap/asan_with_fuzzer.so $(gcc -print-file-name=libstdc++.so)"
  export ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1:halt_on_error=1
  export ASAN_SYMBOLIZER_PATH=/usr/bin/llvm-symbolizer-14   # LLVM's runtime needs a symbolizer
  export OMP_NUM_THREADS=1
  run_canaries address

  local targets=()
  if [ -n "${FUZZ_TARGETS:-}" ]; then
    read -r -a targets <<<"$FUZZ_TARGETS"
  else
    shopt -s nullglob
    targets=(tests/fuzz/fuzz_*.py)
    shopt -u nullglob
  fi
  [ ${#targets[@]} -gt 0 ] || die "no fuzz harness: tests/fuzz/fuzz_*.py (or FUZZ_TARGETS) is empty"
  mkdir -p build/fuzz/crashes
  local t name corpus seeds before after
  for t in "${targets[@]}"; do
    name=$(basename "$t" .py)
    corpus=build/fuzz/corpus_${name#fuzz_}
    mkdir -p "$corpus"
    # A checked-in seed corpus next to the harness is read too; new inputs go to $corpus.
    seeds=()
    [ -d "tests/fuzz/corpus_${name#fuzz_}" ] && seeds=("tests/fuzz/corpus_${name#fuzz_}")
    # A harness that can write its own seeds (fuzz_load: real model files made by fastnn's
    # savers) starts from them on a fresh machine: random bytes almost never form a zip.
    if [ -z "$(ls -A "$corpus")" ] && grep -q -- "--make-corpus" "$t"; then
      preloaded python "$t" --make-corpus "$corpus" >"$LOGDIR/$name-seeds.log" 2>&1 ||
        { cat "$LOGDIR/$name-seeds.log"; die "$t --make-corpus failed"; }
    fi
    # Model files are kilobytes: libFuzzer's default max_len (from the seeds) would cut them.
    local size_args=()
    case "$name" in fuzz_load) size_args=(-max_len=20000) ;; esac
    before=$(find build/fuzz/crashes -type f | wc -l)
    new_reports "$name"
    run_stage "$name" python "$t" -max_total_time="${FUZZ_SECONDS:-60}" -rss_limit_mb=2048 -timeout=30 \
      "${size_args[@]}" -artifact_prefix=build/fuzz/crashes/ "$corpus" "${seeds[@]}"
    after=$(find build/fuzz/crashes -type f | wc -l)
    say "$name: corpus $corpus has $(find "$corpus" -type f | wc -l) inputs, new files in build/fuzz/crashes: $((after - before))"
    [ "$after" -eq "$before" ] || FAILED=1
  done
}

mode_tsan() {
  venv_with tsan
  build_fastnn build/tsan RelWithDebInfo "-fsanitize=thread -fno-omit-frame-pointer" "-fsanitize=thread" "[test]"
  require_symbols __tsan_read
  PRELOAD="$(gcc -print-file-name=libtsan.so) $(gcc -print-file-name=libstdc++.so)"
  # tools/tsan.supp: one glibc-internal false positive (thread_local in a dlopen'ed module).
  local tsan_base="halt_on_error=1:suppressions=$ROOT/tools/tsan.supp"
  export TSAN_OPTIONS=$tsan_base
  run_canaries thread
  new_reports suite
  export TSAN_OPTIONS="$tsan_base:log_path=$REPORTS/tsan:log_exe_name=1"
  # OMP_NUM_THREADS=1: libgomp is not TSan-instrumented, so 2+ OpenMP threads give false
  # races on the outlined-region arguments; the races this targets (GIL release, global
  # state) show up with 1 (RELIABILITY 4, 8.5).
  # The fork/spawn/forkserver test is deselected: its children set OMP_NUM_THREADS=2 on
  # purpose (the libgomp pool is what that test is about), and there the uninstrumented
  # libgomp barrier between packing a GEMM panel and reading it is reported as a race.
  run_stage suite env OMP_NUM_THREADS=1 "${PYTEST[@]}" \
    --deselect tests/runtime/test_concurrency.py::test_child_processes_after_openmp_use \
    "${PYTEST_EXTRA[@]}" $(tests_or tests/runtime/test_concurrency.py)
  # The Python-thread tests of the reliability suite too (8 threads sharing kernels,
  # estimators and a Sequential; training while others predict; the thread setting), not
  # its GIL timing ratios (TSan slows threads unevenly) nor its subprocess tests.
  if [ "$EXTRA_NAMES_TESTS" -eq 0 ] && [ -f tests/runtime/test_reliability.py ]; then
    new_reports reliability-threads
    export TSAN_OPTIONS="$tsan_base:log_path=$REPORTS/tsan:log_exe_name=1"
    run_stage reliability-threads env OMP_NUM_THREADS=1 "${PYTEST[@]}" \
      -k "(thread or concurrent) and not gil" "${PYTEST_EXTRA[@]}" tests/runtime/test_reliability.py
  fi
}

main() {
  local t0=$SECONDS
  "mode_$MODE"
  if [ "$FAILED" -ne 0 ]; then
    say "FAILED after $((SECONDS - t0)) s (logs and report files: $LOGDIR)"
    return 1
  fi
  say "OK after $((SECONDS - t0)) s"
}

# One line, so bash has read the whole file before the long run starts (editing the
# script while it runs then cannot derail it).
main; exit
