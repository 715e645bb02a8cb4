#!/usr/bin/env bash
# Sums cargo's "test result:" lines from a log into one closing line, after the
# figures the tests measured (FIGURES, when given: kiln_testing::figure).
# `ignored` tests are the skipped ones: the tests that need ../shared/data, in a
# clone without it. A test never passes by skipping itself.
# Usage: scripts/test_summary.sh LOG [FIGURES]
set -euo pipefail
if [[ -s "${2:-}" ]]; then
  echo "figures measured by the tests:"
  sed 's/^/  /' "$2"
fi
awk '/^test result:/ {
       for (i = 1; i <= NF; i++) {
         if ($(i) ~ /^passed;?$/) passed += $(i-1)
         if ($(i) ~ /^failed;?$/) failed += $(i-1)
         if ($(i) ~ /^ignored;?$/) skipped += $(i-1)
       }
     }
     END { printf "tests: %d passed, %d failed, %d skipped\n", passed, failed, skipped; exit (failed > 0 || passed == 0) }' "$1"
