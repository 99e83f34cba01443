#!/usr/bin/env bash
# The programs the test suite runs for real: openssl, curl, cfssl (external CA),
# etcd (the shared store), faketime (clocks of whole processes), systemd-analyze
# (the example units' hardening score), nginx (a CRL-checking service), zsh
# (the completion script, typed into a real interactive zsh), docker.io (a Docker
# Engine served with a service certificate), newuidmap (uidmap: as a user who
# is not root, the steps that need root run in a user namespace,
# test/helpers/as-root.ts). Installs the
# missing ones from Debian when it can (as root, with apt-get); otherwise stops
# before any test runs and prints the exact command to run. `npm test` runs this
# first (pretest), so the README's test command works on a fresh machine.
set -euo pipefail
declare -A package=([systemd-analyze]=systemd [openssl]=openssl [curl]=curl [cfssl]=golang-cfssl [etcd]=etcd-server [etcdctl]=etcd-client [faketime]=faketime [zsh]=zsh [newuidmap]=uidmap)
missing=()
for tool in openssl curl cfssl etcd etcdctl faketime systemd-analyze zsh newuidmap; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${package[$tool]}")
done
# nginx lives in /usr/sbin, which a user's PATH may leave out; the tests run it from there.
[ -x /usr/sbin/nginx ] || missing+=(nginx-light)
# Docker Engine (dockerd and the docker CLI): the service-certificate recipe runs a real daemon with --tlsverify.
[ -x /usr/sbin/dockerd ] && [ -x /usr/bin/docker ] || missing+=(docker.io)
# Not root: the tmpfs and the files given to another user need a user namespace
# where this user is root and its subordinate IDs are the other users.
if [ "$(id -u)" -ne 0 ] && [ ${#missing[@]} -eq 0 ] && ! probe=$(unshare --user --map-root-user --map-auto --mount true 2>&1); then
  echo "error: as a user who is not root ($(id -un)), the tests that mount a tmpfs or give a file to another user run in a user namespace, and this user cannot make one: $probe" >&2
  echo "hint: run: sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 $(id -un)   (and let users make user namespaces: sysctl user.max_user_namespaces, kernel.apparmor_restrict_unprivileged_userns=0); or run the tests as root" >&2
  exit 1
fi
[ ${#missing[@]} -eq 0 ] && exit 0
command="apt-get install -y ${missing[*]}"
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing what the tests need: ${missing[*]}" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
  # Debian starts an etcd service on install; the tests run their own on random ports.
  # Debian starts nginx on port 80 the same way; the tests start their own on loopback.
  # Debian's docker.io starts dockerd and containerd too; each test starts its own, isolated.
  if command -v systemctl >/dev/null 2>&1; then systemctl disable --now etcd nginx docker docker.socket containerd >/dev/null 2>&1 || true; fi
  exit 0
fi
echo "error: the tests need ${missing[*]}, which are not installed" >&2
echo "hint: run: sudo $command" >&2
exit 1
