#!/usr/bin/env bash
# Installs the project's offline equivalents of the Python, Node.js and Go language hosts and the
# random/command resource plugins (offline_plugins/), for machines where the official binaries
# cannot be had (the Node.js and Go hosts run programs with the machine's node and go).
# They run from a venv and a source copy in the cache, so they never depend on one checkout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=env.sh
. "$here/env.sh"
root=$SUPAQUEUE_ROOT
cache=$SUPAQUEUE_CACHE

pins=$(grep -oE '^(pulumi|bcrypt)==[^ ]+' "$root/constraints.txt" | sort | paste -sd' ')
venv="$cache/plugin-venv"
if [ "$(cat "$venv/.pins" 2>/dev/null)" != "$pins" ]; then
  echo "==> creating the offline plugins' venv ($pins)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  # shellcheck disable=SC2086
  "$venv/bin/pip" install -q --disable-pip-version-check $pins
  echo "$pins" >"$venv/.pins"
fi

# The launchers this script writes are part of the install: a change to it makes a new one too.
hash=$( (cd "$root" && find offline_plugins -type f -name '*.py' -print0 | sort -z | xargs -0 sha256sum; echo "$pins"; cat "$here/install-offline-plugins.sh") | sha256sum | cut -c1-16)
dest="$cache/offline-plugins/$hash"
if [ ! -f "$dest/.complete" ]; then
  rm -rf "$dest"
  mkdir -p "$dest/bin"
  (cd "$root" && find offline_plugins -type f -name '*.py' -print0 | xargs -0 cp --parents -t "$dest")
  for pair in pulumi-language-python:language_host pulumi-language-nodejs:nodejs_host \
              pulumi-language-go:go_host pulumi-resource-random:random_provider \
              pulumi-resource-command:command_provider; do
    exe=${pair%%:*} module=${pair##*:}
    cat >"$dest/bin/$exe" <<SH
#!/bin/sh
# Offline equivalent of the official $exe (supaqueue toolchain, sources: $dest).
PYTHONPATH="$dest" exec "$venv/bin/python" -u -m offline_plugins.$module "\$@"
SH
    chmod 0755 "$dest/bin/$exe"
  done
  touch "$dest/.complete"
fi
# Real files next to the CLI (not symlinks): the CLI warns about a language host on PATH
# unless it resolves to the folder of the pulumi binary itself.
for exe in pulumi-language-python pulumi-language-nodejs pulumi-language-go; do
  if ! cmp -s "$dest/bin/$exe" "$cache/bin/$exe"; then
    install -m 0755 "$dest/bin/$exe" "$cache/bin/.$exe.tmp"
    mv -f "$cache/bin/.$exe.tmp" "$cache/bin/$exe"
  fi
  ln -sfn "$cache/bin/$exe" "$root/.toolchain/bin/$exe"
done

stamp="$PULUMI_HOME/.supaqueue-offline-plugins"
# Read the list once: `pulumi plugin ls | grep -q` under pipefail fails whenever grep exits first.
installed=$(pulumi plugin ls 2>/dev/null || true)
if [ "$(cat "$stamp" 2>/dev/null)" != "$hash" ] \
   || ! grep -qE '^random +resource +4\.21\.4' <<<"$installed" \
   || ! grep -qE '^command +resource +1\.2\.1' <<<"$installed"; then
  echo "==> installing the offline random 4.21.4 and command 1.2.1 plugins"
  pulumi plugin install resource random 4.21.4 --file "$dest/bin/pulumi-resource-random" --reinstall >/dev/null
  pulumi plugin install resource command 1.2.1 --file "$dest/bin/pulumi-resource-command" --reinstall >/dev/null
  echo "$hash" >"$stamp"
fi
