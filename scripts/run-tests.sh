#!/usr/bin/env bash
# Runs each cmocka test binary in its own temporary folder (tests make their own data there)
# and sums up the test cases. Exit status is non-zero when any test fails or a binary crashes.
set -u
root=$(pwd)
pass=0; fail=0; failed=()
for t in "$@"; do
  dir=$(mktemp -d "${TMPDIR:-/tmp}/xdistill-test.XXXXXX")
  name=$(basename "$t")
  log="$dir/.log"
  case "$t" in /*) exe=$t ;; *) exe=$root/$t ;; esac   # BUILD may be an absolute folder
  (cd "$dir" && XDISTILL_ROOT="$root" "$exe") > "$log" 2>&1
  rc=$?
  cat "$log"
  p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -n 1)
  f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -n 1)
  pass=$((pass + ${p:-0})); fail=$((fail + ${f:-0}))
  if [ $rc -ne 0 ]; then
    failed+=("$name")
    [ -z "$f" ] && fail=$((fail + 1))   # crashed before cmocka could count
  fi
  rm -rf "$dir"
done
echo
[ ${#failed[@]} -eq 0 ] || echo "failing test programs: ${failed[*]}"
echo "tests: $pass passed, $fail failed"
[ ${#failed[@]} -eq 0 ]
