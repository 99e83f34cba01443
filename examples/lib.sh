# Shared by the example scripts: the CLI, a scratch folder, background
# processes that are stopped on exit, and waiting for a line in a log.
# Source it after `cd` to the repository root:  . examples/lib.sh NAME

# An array, not a function: a backgrounded function would give $! of a subshell.
muster=(node dist/cli/main.js)

work=$(mktemp -d "${TMPDIR:-/tmp}/muster-$1-XXXXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# wait_for FILE PATTERN: until the pattern shows up in a log (30 s at most)
wait_for() {
  for _ in $(seq 1 300); do
    if grep -qE "$2" "$1" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for '$2' in $1:" >&2
  cat "$1" >&2
  return 1
}
