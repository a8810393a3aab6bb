# Shared by the compression table scripts (sourced): the figures they print.

# "mean +- std" in points of the values (fractions) on standard input, sample standard deviation
# (0 for one value)
mean_std() {
  awk '{ v[NR] = $1; s += $1 } END { m = s / NR; for (i = 1; i <= NR; i++) q += (v[i] - m) ^ 2
                                      sd = NR > 1 ? sqrt(q / (NR - 1)) : 0
                                      printf "%.2f +- %.2f%%", 100 * m, 100 * sd }'
}
# the final test accuracy in RUN_FOLDER/summary.json (a fraction)
final_acc() { sed -nE 's/.*"final_test_acc": ([0-9.eE+-]+).*/\1/p' "$1/summary.json"; }
