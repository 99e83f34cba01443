#!/usr/bin/env bash
# npm run package [-- OUTDIR]: builds muster_<version>_<arch>.deb with dpkg-deb,
# in the repository root or OUTDIR, from the npm tarball (npm pack: dist/ from
# prepare, npm-shrinkwrap.json from prepack):
#   /usr/lib/muster/               package.json, dist/, npm-shrinkwrap.json and the
#                                  production dependencies exactly as locked (npm ci)
#   /usr/bin/muster, muster-ca     launchers: Debian's node runs the package's bin entries
#   /lib/systemd/system/           the units of examples/systemd/, pointed at /usr/bin/muster
#   bash and zsh completion        from 'muster completion'
#   /usr/share/man/man1/muster.1.gz from scripts/man-page.ts
# The control template and maintainer scripts are in packaging/debian/.
set -euo pipefail
cd "$(dirname "$0")/.."
umask 022
out=$(realpath "${1:-.}")
stage=$(mktemp -d "${TMPDIR:-/tmp}/muster-deb-XXXXXX")
trap 'rm -rf "$stage"' EXIT
root=$stage/root
lib=$root/usr/lib/muster

pkg() { node -p "const p = require('./package.json'); $1"; }
version=$(pkg 'p.version')
# engines.node (">=X.Y.Z") is the floor of Debian's nodejs too.
node_floor=$(pkg 'const m = /^>=\s*(\d+\.\d+\.\d+)$/.exec(p.engines.node); if (!m) throw new Error("engines.node is not >=X.Y.Z"); m[1]')
arch=$(dpkg --print-architecture)

echo "== npm pack"
tarball=$(npm pack --silent --pack-destination "$stage" | tail -1)
tar -xzf "$stage/$tarball" -C "$stage"
install -d "$lib"
cp -a "$stage/package/package.json" "$stage/package/npm-shrinkwrap.json" "$stage/package/dist" "$lib/"

echo "== production dependencies, exactly as locked"
# npm ci reads the shrinkwrap; no scripts (dist/ is built, the dependencies need none); an engine mismatch fails the build.
(cd "$lib" && npm ci --omit=dev --ignore-scripts --engine-strict --no-audit --no-fund --loglevel=warn)

echo "== launchers"
install -d "$root/usr/bin"
for name in $(pkg 'Object.keys(p.bin).join(" ")'); do
  target=$(pkg "p.bin['$name']")
  printf '#!/bin/sh\n# %s, from the muster package: Debian'\''s node runs it from /usr/lib/muster.\nexec /usr/bin/node /usr/lib/muster/%s "$@"\n' "$name" "$target" >"$root/usr/bin/$name"
  chmod 0755 "$root/usr/bin/$name"
done

echo "== systemd units"
install -d "$root/lib/systemd/system"
for example in examples/systemd/*.service; do
  unit=$(basename "$example")
  # The examples' leading comment tells how to install npm's muster (/usr/local/bin) by hand; here the package did that.
  {
    echo "# $unit from the muster package. The package created the user muster and /var/lib/muster;"
    echo "# found the cluster (muster init) or join it (muster join) there once as that user, then"
    echo "# systemctl enable --now $unit. See muster(1) and the README."
    sed -e '1,/^\[Unit\]/{/^#/d}' -e 's#/usr/local/bin/muster#/usr/bin/muster#g' -e 's#^Documentation=.*#& man:muster(1)#' "$example"
  } >"$root/lib/systemd/system/$unit"
  if ! grep -q '^ExecStart=/usr/bin/muster ' "$root/lib/systemd/system/$unit" || grep -q /usr/local/bin "$root/lib/systemd/system/$unit"; then
    echo "error: $example: its ExecStart is not /usr/local/bin/muster, which the package points at /usr/bin/muster" >&2
    exit 1
  fi
done

echo "== completion and man page"
install -d "$root/usr/share/bash-completion/completions" "$root/usr/share/zsh/vendor-completions" "$root/usr/share/man/man1" "$root/usr/share/doc/muster"
node "$lib/dist/cli/main.js" completion bash >"$root/usr/share/bash-completion/completions/muster"
node "$lib/dist/cli/main.js" completion zsh >"$root/usr/share/zsh/vendor-completions/_muster"
node node_modules/tsx/dist/cli.mjs scripts/man-page.ts | gzip -9n >"$root/usr/share/man/man1/muster.1.gz"
cp packaging/debian/copyright "$root/usr/share/doc/muster/copyright"
gzip -9n <README.md >"$root/usr/share/doc/muster/README.md.gz"

echo "== control"
install -d "$root/DEBIAN"
install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$root/DEBIAN/"
chmod -R u=rwX,go=rX "$root/usr" "$root/lib"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@NODE_FLOOR@/$node_floor/" -e "s/@INSTALLED_SIZE@/$size/" packaging/debian/control >"$root/DEBIAN/control"

deb="$out/muster_${version}_${arch}.deb"
dpkg-deb --root-owner-group --build "$root" "$deb" >/dev/null
echo "built $deb"
