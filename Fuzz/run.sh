#!/usr/bin/env bash
# Builds the libFuzzer targets (release, AddressSanitizer, coverage on the gateway's own
# modules) and runs one for a given time. See Fuzz/README.md.
#
#   Fuzz/run.sh build                 # build all six targets
#   Fuzz/run.sh config 600            # run fuzz-config for 600 s
#   Fuzz/run.sh resp 600 -jobs=2      # extra arguments go to libFuzzer
set -euo pipefail
cd "$(dirname "$0")/.."
scratch=.build-fuzz
# Swift's own crash handler reads the crashed process's memory, which AddressSanitizer
# reports as its own error; libFuzzer's report is the one we want.
export SWIFT_BACKTRACE=enable=no
targets=(config shape route cookie resp headers)

build() {
    for t in "${targets[@]}"; do
        GATEWAY_FUZZ=1 swift build -c release --scratch-path "$scratch" --product "fuzz-$t"
    done
}

if [ "${1:-}" = build ]; then
    build
    exit 0
fi
target=${1:?usage: Fuzz/run.sh build | Fuzz/run.sh TARGET SECONDS [libFuzzer args]}
seconds=${2:-600}
shift 2 || shift $#
binary="$scratch/release/fuzz-$target"
[ -x "$binary" ] || GATEWAY_FUZZ=1 swift build -c release --scratch-path "$scratch" --product "fuzz-$target"
work="$scratch/corpus/$target"
crashes="$scratch/crashes/$target"
mkdir -p "$work" "$crashes"
dict=()
[ -f "Fuzz/dict/$target.dict" ] && dict=(-dict="Fuzz/dict/$target.dict")
# New inputs go to the work corpus; the seeds in Fuzz/corpus stay as committed.
exec "$binary" "$work" "Fuzz/corpus/$target" "${dict[@]}" -max_total_time="$seconds" \
    -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$crashes/" -print_final_stats=1 "$@"
