#!/usr/bin/env bash
# Builds wgpy._fastpath with AddressSanitizer + UndefinedBehaviorSanitizer into a scratch copy
# of the package and runs the fastpath property tests against it (the python binary is not
# instrumented, so libasan is preloaded; PYTHONMALLOC=malloc lets ASan see every object's
# allocation, and the tests hand in exact-size array.array buffers so a one-byte overread is
# caught). Any sanitizer report fails the run. Extra arguments go to pytest (more test files
# too, e.g. tests/unit/core/test_batches.py to run the core's properties on the sanitized build):
#   tools/asan.sh --hypothesis-seed=3
# Needs gcc's libasan/libubsan (Debian: libgcc-12-dev, installed with gcc).
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cp -r src/wgpy "$scratch/wgpy"
find "$scratch/wgpy" -name '_fastpath*.so' -delete
flags="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g -O1"
WGPY_CFLAGS="$flags" python3 setup.py -q build_ext --build-lib "$scratch" \
    --build-temp "$scratch/build" 2>&1 | grep -v -e '^$' -e BetaConfiguration -e 'warnings.warn' || true
ls "$scratch"/wgpy/_fastpath*.so >/dev/null
CC=${CC:-gcc}
preload="$($CC -print-file-name=libasan.so) $($CC -print-file-name=libubsan.so)"
LD_PRELOAD="$preload" \
ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:strict_string_checks=1 \
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
PYTHONMALLOC=malloc PYTHONPATH="$scratch:tests/support" WGPY_REQUIRE_FASTPATH=1 \
    python3 -m pytest -q -p no:cacheprovider tests/unit/core/test_fastpath.py "$@"
