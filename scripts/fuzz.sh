#!/usr/bin/env bash
# Runs the libFuzzer harnesses that `make fuzz-build` made (see docs/FUZZING.md), one after
# another, each for SECONDS, and prints one line of figures per harness.
#   scripts/fuzz.sh BUILD SECONDS [NAME...]     NAMEs: png, npy, ... (default: every harness)
# Each harness starts from its committed seeds (tests/fuzz/corpus/NAME) and the inputs earlier runs
# found (BUILD/corpus/NAME, where new ones go), with its dictionary (tests/fuzz/dict/NAME.dict)
# when there is one. A crash, a hang (FUZZ_TIMEOUT seconds for one input), running out of memory
# (FUZZ_RSS_MB) or a leak is a finding: the input is kept in BUILD/findings/NAME/ and the exit
# status is 1.
#   scripts/fuzz.sh merge BUILD [NAME...]
# adds to tests/fuzz/corpus/NAME the inputs of BUILD/corpus/NAME that reach code the committed
# corpus does not, as few and as small as cover them (libFuzzer's -set_cover_merge=1), so that the
# committed corpus stays small.
set -u
cd "$(dirname "$0")/.."
# Allocations the ASan allocator cannot serve return NULL as they would without it (the readers
# report XD_ENOMEM); a single allocation over the RSS limit is still a finding.
export ASAN_OPTIONS="allocator_may_return_null=1:detect_leaks=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
timeout=${FUZZ_TIMEOUT:-10}
rss=${FUZZ_RSS_MB:-2048}

if [ "${1:-}" = merge ]; then
  build=${2:?usage: scripts/fuzz.sh merge BUILD [NAME...]}
  shift 2
  names=("$@")
  [ ${#names[@]} -ne 0 ] ||
    for f in tests/fuzz/fuzz_*.c; do n=${f#tests/fuzz/fuzz_}; names+=("${n%.c}"); done
  for n in "${names[@]}"; do
    before=$(ls "tests/fuzz/corpus/$n" | wc -l)
    mkdir -p "$build/logs"
    log=$build/logs/$n.merge.log
    "$build/fuzz/fuzz_$n" -set_cover_merge=1 -timeout="$timeout" -rss_limit_mb="$rss" \
      "tests/fuzz/corpus/$n" "$build/corpus/$n" > "$log" 2>&1 ||
      { echo "fuzz: merge of $n failed (log $log)" >&2; exit 1; }
    echo "$n: $before -> $(ls "tests/fuzz/corpus/$n" | wc -l) inputs," \
      "$(cat "tests/fuzz/corpus/$n"/* | wc -c) bytes"
  done
  exit 0
fi
build=${1:?usage: scripts/fuzz.sh BUILD SECONDS [NAME...]}
seconds=${2:?usage: scripts/fuzz.sh BUILD SECONDS [NAME...]}
shift 2

# Largest input per format: room for every structure the reader knows, small enough to stay fast.
max_len() {
  case $1 in
    png|jpeg) echo 16384 ;;
    safetensors|dataset|recipe) echo 8192 ;;
    model) echo 2048 ;;
    *) echo 4096 ;;
  esac
}

names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  for f in tests/fuzz/fuzz_*.c; do n=${f#tests/fuzz/fuzz_}; names+=("${n%.c}"); done
fi


printf '%-15s %10s %8s %6s %6s %7s %9s  %s\n' harness runs exec/s cov ft corpus bytes result
failed=()
start=$(date +%s)
for n in "${names[@]}"; do
  bin=$build/fuzz/fuzz_$n
  if [ ! -x "$bin" ]; then echo "fuzz: no harness $bin" >&2; failed+=("$n"); continue; fi
  work=$build/corpus/$n findings=$build/findings/$n log=$build/logs/$n.log
  mkdir -p "$work" "$findings" "$(dirname "$log")"
  dict=(); [ -f "tests/fuzz/dict/$n.dict" ] && dict=("-dict=tests/fuzz/dict/$n.dict")
  stamp=$(mktemp)
  "$bin" "$work" "tests/fuzz/corpus/$n" "${dict[@]}" -max_len="$(max_len "$n")" \
    -max_total_time="$seconds" -timeout="$timeout" -rss_limit_mb="$rss" \
    -artifact_prefix="$findings/" -print_final_stats=1 > "$log" 2>&1
  rc=$?
  new=$(find "$findings" -type f -newer "$stamp" | sort); rm -f "$stamp"
  # the last status line: "#N DONE cov: C ft: F corp: K/SIZE ... exec/s: E ..." (or the last pulse)
  last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<< "$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<< "$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\)\/\([0-9A-Za-z]*\).*/\1 \2/p' <<< "$last")
  result=ok
  if [ $rc -ne 0 ] || [ -n "$new" ]; then
    result="FINDING (exit $rc, log $log)"
    failed+=("$n")
  fi
  printf '%-15s %10s %8s %6s %6s %7s %9s  %s\n' "$n" "${runs:--}" "${eps:--}" "${cov:--}" \
    "${ft:--}" ${corp:-- -} "$result"
  for f in $new; do echo "  kept $f (reproduce: $bin $f)"; done
  [ "$result" = ok ] ||
    grep -E '^(==[0-9]+==ERROR|SUMMARY|fuzz check failed|.*runtime error)' "$log" | head -n 5 |
    sed 's/^/  /'
done
echo "fuzz: ${#names[@]} harnesses, $(( $(date +%s) - start )) s"
if [ ${#failed[@]} -ne 0 ]; then
  echo "fuzz: findings in: ${failed[*]} (inputs under $build/findings/)" >&2
  exit 1
fi
