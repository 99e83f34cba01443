#!/usr/bin/env bash
# npm run test:load [-- VITEST ARGS]: the whole suite (npm test) beside four
# CPU-burning processes, with every wait bound scaled by MUSTER_TEST_SLOWDOWN
# (3 unless set; test/helpers/slowdown.ts). It shows the suite waits for
# events, not for fixed times. Prints the duration and the load average; the
# burners stop however the run ends (each also exits once this script is gone,
# so a SIGKILL of the script does not leave them spinning).
set -uo pipefail
cd "$(dirname "$0")/.."

export MUSTER_TEST_SLOWDOWN="${MUSTER_TEST_SLOWDOWN:-3}"
burners=()
stop_burners() {
  for pid in "${burners[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${burners[@]}"; do wait "$pid" 2>/dev/null; done
  burners=()
}
trap stop_burners EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# A busy loop that looks up its parent every few million turns and exits when it is gone.
burn='const parent = Number(process.argv[1]); for (let i = 1; ; i++) if (i % 50_000_000 === 0) { try { process.kill(parent, 0); } catch { process.exit(0); } }'
for _ in 1 2 3 4; do
  node -e "$burn" "$$" &
  burners+=("$!")
done
echo "test-under-load: 4 CPU burners (pids ${burners[*]}) on $(nproc) CPUs, MUSTER_TEST_SLOWDOWN=$MUSTER_TEST_SLOWDOWN, load average $(cut -d' ' -f1-3 /proc/loadavg)"

start=$(date +%s)
npm test -- "$@"
status=$?
elapsed=$(( $(date +%s) - start ))
load=$(cut -d' ' -f1-3 /proc/loadavg)
stop_burners
echo "test-under-load: npm test exited $status after ${elapsed} s ($((elapsed / 60)) min $((elapsed % 60)) s) beside 4 CPU burners, MUSTER_TEST_SLOWDOWN=$MUSTER_TEST_SLOWDOWN; load average at the end $load"
exit "$status"
