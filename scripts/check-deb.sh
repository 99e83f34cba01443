#!/usr/bin/env bash
# CI: the Debian package end to end, as root on Debian with nodejs >= 20.18.
#   scripts/check-deb.sh [DEB]      (default: build one with npm run package)
# Builds it, installs it with apt-get, checks what it put
# where and its units (systemd-analyze verify), founds a cluster as the user
# muster in /var/lib/muster, joins a node from a second data dir with a token
# file, lists the nodes through /usr/bin/muster, stops both, removes and purges
# the package and checks that the data dir (the cluster's CA) stayed.
# Loopback and port 0 only; every wait is bounded; whatever it started is
# stopped and whatever it created (package, user, /var/lib/muster) is removed,
# on failure too. It refuses to run where muster is installed or set up.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "error: check-deb.sh installs a package: run it as root" >&2
  exit 1
fi
if dpkg -s muster >/dev/null 2>&1 || [ -e /var/lib/muster ] || getent passwd muster >/dev/null || getent group muster >/dev/null; then
  echo "error: this machine has muster (the package, /var/lib/muster or the user muster); check-deb.sh installs and removes all three, so it runs only where none is" >&2
  exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/muster-check-deb-XXXXXX")
chmod 0755 "$work" # apt's _apt user reads the .deb from here
pids=()
installed=0
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$installed" -eq 1 ]; then
    if dpkg -s muster >/dev/null 2>&1; then apt-get purge -y -qq muster >/dev/null 2>&1 || true; fi
    # Created by this run: none of them existed before it (checked above).
    rm -rf /var/lib/muster
    if getent passwd muster >/dev/null; then deluser --system --quiet muster >/dev/null 2>&1 || userdel muster; fi
    if getent group muster >/dev/null; then delgroup --system --quiet muster >/dev/null 2>&1 || groupdel muster; fi
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

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

# expect WHAT ACTUAL WANTED
expect() {
  if [ "$2" != "$3" ]; then
    echo "error: $1 is '$2', expected '$3'" >&2
    exit 1
  fi
}

if [ $# -gt 0 ]; then
  cp "$1" "$work/"
else
  echo "== npm run package"
  timeout 900 npm run --silent package -- "$work"
fi
deb=$(echo "$work"/muster_*.deb)

echo "== apt-get install $(basename "$deb")"
installed=1
(cd "$work" && timeout 600 apt-get install -y -qq -o DPkg::Lock::Timeout=120 "./$(basename "$deb")")
expect "the owner and mode of /var/lib/muster" "$(stat -c '%U:%G %a' /var/lib/muster)" "muster:muster 700"
expect "the shell of the user muster" "$(getent passwd muster | cut -d: -f7)" /usr/sbin/nologin
expect "muster --version" "$(/usr/bin/muster --version)" "$(node -p 'require("./package.json").version')"
/usr/bin/muster-ca --version
for file in /usr/lib/muster/dist/cli/main.js /usr/share/bash-completion/completions/muster /usr/share/zsh/vendor-completions/_muster /usr/share/man/man1/muster.1.gz; do
  [ -f "$file" ] || { echo "error: $file is missing" >&2; exit 1; }
done
# Not `zcat | grep -q`: grep stops at the first match and zcat's SIGPIPE fails the pipeline (pipefail).
man_page=$(zcat /usr/share/man/man1/muster.1.gz)
grep -q '^\.SS muster node ls' <<<"$man_page" || { echo "error: the man page has no 'muster node ls' section" >&2; exit 1; }
expect "bash completion of 'muster no'" "$(bash --norc -c 'source /usr/share/bash-completion/completions/muster; COMP_WORDS=(muster no); COMP_CWORD=1; _muster; echo "${COMPREPLY[*]}"')" node
if command -v zsh >/dev/null; then zsh -n /usr/share/zsh/vendor-completions/_muster; fi

echo "== systemd units: verified, neither enabled nor started"
for unit in muster-manager.service muster-node.service; do
  grep -q '^ExecStart=/usr/bin/muster run --data-dir /var/lib/muster$' "/lib/systemd/system/$unit"
  if compgen -G "/etc/systemd/system/*.wants/$unit" >/dev/null; then
    echo "error: the package enabled $unit" >&2
    exit 1
  fi
done
systemd-analyze verify /lib/systemd/system/muster-manager.service /lib/systemd/system/muster-node.service

echo "== muster init as the user muster, in /var/lib/muster"
cd /
# As systemd runs the units: the user's identity and environment, and no process in between (runuser would be one).
as_muster=(setpriv --reuid=muster --regid=muster --init-groups --reset-env --)
setsid "${as_muster[@]}" /usr/bin/muster init --data-dir /var/lib/muster --listen-addr 127.0.0.1:0 >"$work/manager.log" 2>&1 &
pids+=($!)
wait_for "$work/manager.log" 'muster join --token SWMTKN-1-'
join_line=$(grep -m1 'muster join --token' "$work/manager.log")
addr=$(awk '{print $5}' <<<"$join_line")
(umask 077 && awk '{print $4}' <<<"$join_line" >"$work/token")

echo "== muster join from a second data dir, with a token file"
setsid /usr/bin/muster join --token-file "$work/token" "$addr" --data-dir "$work/node" >"$work/node.log" 2>&1 &
pids+=($!)
wait_for "$work/node.log" 'This node joined cluster'

echo "== muster node ls"
"${as_muster[@]}" /usr/bin/muster node ls --data-dir /var/lib/muster | tee "$work/nodes"
expect "the number of nodes listed" "$(tail -n +2 "$work/nodes" | grep -c .)" 2
grep -qE ' manager +ready ' "$work/nodes"
grep -qE ' worker +ready ' "$work/nodes"

echo "== stopping the manager and the node"
for pid in "${pids[@]}"; do kill -TERM -- "-$pid"; done
for pid in "${pids[@]}"; do wait "$pid" || true; done
pids=()
grep -q 'shutting down' "$work/manager.log"
if pgrep -u muster >/dev/null; then
  echo "error: processes of the user muster are still running" >&2
  exit 1
fi

echo "== apt-get remove and purge: the data dir and the user stay"
apt-get remove -y -qq muster >/dev/null
[ ! -e /usr/bin/muster ] || { echo "error: /usr/bin/muster is still there after apt-get remove" >&2; exit 1; }
for step in remove purge; do
  [ "$step" = purge ] && apt-get purge -y -qq muster >/dev/null
  expect "the owner and mode of /var/lib/muster after $step" "$(stat -c '%U:%G %a' /var/lib/muster)" "muster:muster 700"
  [ -f /var/lib/muster/node.json ] && [ -d /var/lib/muster/manager ] || { echo "error: the cluster in /var/lib/muster is gone after $step" >&2; exit 1; }
done
echo "Debian package OK"
