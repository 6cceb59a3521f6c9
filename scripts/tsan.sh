#!/usr/bin/env bash
# The test suite under ThreadSanitizer (scripts/README.md). Builds into .build-tsan, runs
# every test with TSan reports written to a directory (the gateway processes some tests
# start are TSan builds too and report there), and prints the reports grouped by place.
#
#   scripts/tsan.sh [report-directory]      (default /tmp/gateway-tsan)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/gateway-tsan}
mkdir -p "$out"
rm -f "$out"/report.*
swift build --build-tests --sanitize=thread --scratch-path .build-tsan
start=$(date +%s)
TSAN_OPTIONS="log_path=$out/report history_size=4" \
    .build-tsan/debug/gatewayPackageTests.xctest --testing-library swift-testing >"$out/tests.log" 2>&1 || true
echo "tests took $(($(date +%s) - start)) s under TSan; log: $out/tests.log"
grep -E "^. Test run with" "$out/tests.log" | tail -1 || true
shopt -s nullglob
reports=("$out"/report.*)
if [ ${#reports[@]} -eq 0 ]; then
    echo "no ThreadSanitizer reports"
    exit 0
fi
echo "ThreadSanitizer reports, by place (count, kind, file:line):"
grep -h "^SUMMARY: ThreadSanitizer" "${reports[@]}" | sed -E 's/ in [^ ]+$//; s/^SUMMARY: ThreadSanitizer: //' | sort | uniq -c | sort -rn
