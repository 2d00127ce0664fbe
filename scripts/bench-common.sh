# Sourced by the benchmark scripts: timing helpers. RUNS (default 3) is how often a command runs.

now() { date +%s.%N; }

# best_rate COUNT CMD... : runs CMD $RUNS times, prints the best images/s
best_rate() {
  local count=$1; shift
  local best=0
  for _ in $(seq "${RUNS:-3}"); do
    local t0 t1
    t0=$(now); "$@" >/dev/null 2>&1; t1=$(now)
    best=$(python3 -c "print(max($best, $count / ($t1 - $t0)))")
  done
  echo "$best"
}
