#!/usr/bin/env bash
# Sums cargo's "test result:" lines from a log into one closing line, after the
# figures the tests measured (FIGURES, when given: kiln_testing::figure).
# Skipped are the `ignored` tests (those that need ../shared/data, in a clone
# without it) and the tests listed in SKIPS (kiln_testing::skipped: a tool the
# set-up could not install here); cargo counted the latter as passed, so they
# move from passed to skipped. A test never passes by skipping itself.
# Usage: scripts/make/test_summary.sh LOG [FIGURES] [SKIPS] [CARGO_STATUS]
# It prints even when cargo failed (CARGO_STATUS non-zero), and then fails too:
# a build error counts as a failure even with no test result line.
set -euo pipefail
if [[ -s "${2:-}" ]]; then
  echo "figures measured by the tests:"
  sed 's/^/  /' "$2"
fi
recorded=0
if [[ -s "${3:-}" ]]; then
  echo "skipped by the tests:"
  sed 's/^/  /' "$3"
  recorded=$(wc -l < "$3")
fi
cargo_status="${4:-0}"
awk -v recorded="$recorded" -v cargo_status="$cargo_status" '/^test result:/ {
       for (i = 1; i <= NF; i++) {
         if ($(i) ~ /^passed;?$/) passed += $(i-1)
         if ($(i) ~ /^failed;?$/) failed += $(i-1)
         if ($(i) ~ /^ignored;?$/) skipped += $(i-1)
       }
     }
     END { passed -= recorded; skipped += recorded
           if (cargo_status != 0 && failed == 0) {
             print "cargo test exited " cargo_status " with no failed test: a build error (see above), counted as one failure"
             failed = 1
           }
           printf "tests: %d passed, %d failed, %d skipped\n", passed, failed, skipped
           exit (failed > 0 || passed == 0) }' "$1"
