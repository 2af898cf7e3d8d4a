#!/usr/bin/env bash
# `make toolchain`: installs everything supaqueue runs with, idempotently, cached outside the repo.
# Only the package registries are used; see docs/architecture/toolchain.md "Toolchain and cache".
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=env.sh
. "$here/env.sh"
root=$SUPAQUEUE_ROOT
cache=$SUPAQUEUE_CACHE
cli_version=v3.274.1
deno_version=2.9.6
mkdir -p "$cache/bin" "$PULUMI_HOME" "$root/.toolchain/bin"
step() { printf '==> %s\n' "$*"; }
die() { printf 'toolchain: %s\n' "$*" >&2; exit 1; }
tree_hash() { (cd "$root" && find "$@" -type f ! -path '*/__pycache__/*' -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16); }

# 1. PostgreSQL 15 server and pg_cron (Debian packages) when missing.
pgbin=/usr/lib/postgresql/15/bin
if [ ! -x "$pgbin/postgres" ] || [ ! -f /usr/lib/postgresql/15/lib/pg_cron.so ] \
   || [ ! -f /usr/share/postgresql/15/extension/pgcrypto.control ]; then
  step "installing PostgreSQL 15 and pg_cron"
  [ "$(id -u)" = 0 ] || die "PostgreSQL 15 and postgresql-15-cron are missing; install them (as root: apt-get install postgresql-15 postgresql-15-cron)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 postgresql-15-cron postgresql-contrib >/dev/null
fi

# 1b. Chromium and its WebDriver (Debian packages), only for the dashboard's browser tests:
# `make test` asks for them (SUPAQUEUE_WITH_BROWSER=1); `make up` does not need a browser.
if [ "${SUPAQUEUE_WITH_BROWSER:-0}" = 1 ] && { [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; }; then
  step "installing Chromium and chromium-driver (browser tests of supaqueue ui)"
  [ "$(id -u)" = 0 ] || die "chromium and chromium-driver are missing; install them (as root: apt-get install chromium chromium-driver)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi

# 2. The project venv (Pulumi.yaml's `virtualenv` option points here).
py_stamp="$root/.venv/.supaqueue-deps"
py_hash=$(cat "$root/pyproject.toml" "$root/constraints.txt" | sha256sum | cut -c1-16)
if [ ! -x "$root/.venv/bin/python" ] || [ "$(cat "$py_stamp" 2>/dev/null)" != "$py_hash" ]; then
  step "creating .venv"
  python3 -m venv "$root/.venv"
  mkdir -p "$cache/logs"
  # compat mode: a .pth pointing at the repo, so `supaqueue` imports from the checkout. The
  # exact versions are constraints.txt's (pyproject.toml holds the package's ranges).
  if ! "$root/.venv/bin/pip" install --disable-pip-version-check -c "$root/constraints.txt" \
       -e "$root[dev]" --config-settings editable_mode=compat >"$cache/logs/pip.log" 2>&1; then
    tail -30 "$cache/logs/pip.log" >&2
    die "installing the Python dependencies failed (full log: $cache/logs/pip.log)"
  fi
  echo "$py_hash" >"$py_stamp"
fi

# 3. The Pulumi CLI: an official one on PATH, else built from the Go module proxy.
official=""
if pulumi_path=$(PATH=$(printf '%s' "$PATH" | tr ':' '\n' | grep -v "^$root/.toolchain/bin$" | paste -sd:) command -v pulumi 2>/dev/null); then
  official=$(dirname "$(readlink -f "$pulumi_path")")
fi
if [ -n "$official" ]; then
  step "using the Pulumi CLI on PATH ($official)"
  for f in pulumi pulumi-language-python pulumi-language-python-exec pulumi-resource-pulumi-python \
           pulumi-language-nodejs pulumi-language-go pulumi-language-yaml; do
    [ -e "$official/$f" ] && ln -sfn "$official/$f" "$root/.toolchain/bin/$f"
  done
else
  if [ "$("$cache/bin/pulumi" version 2>/dev/null || true)" != "$cli_version" ]; then
    step "building the Pulumi CLI $cli_version from Go modules (first run only, a few minutes)"
  fi
  PULUMI_CLI_VERSION=$cli_version "$here/build-pulumi-cli.sh" "$cache/bin" >/dev/null
  # The dynamic-provider launcher: ours (upstream's, plus a guard so no provider outlives its
  # CLI), installed next to the CLI: one launcher on PATH and in the CLI's folder, so the CLI
  # does not warn that they differ.
  if ! cmp -s "$here/pulumi-resource-pulumi-python" "$cache/bin/pulumi-resource-pulumi-python"; then
    install -m 0755 "$here/pulumi-resource-pulumi-python" "$cache/bin/pulumi-resource-pulumi-python"
  fi
  for f in pulumi pulumi-language-python-exec pulumi-resource-pulumi-python; do
    ln -sfn "$cache/bin/$f" "$root/.toolchain/bin/$f"
  done
fi

# 3b. The YAML language host, when the CLI on PATH has none, and pulumi-sdkgen (SDK generation
# for the offline hosts) when there is no official CLI: built from Go modules like the CLI (about
# 40 s and 15 s after the CLI build, whose compiled packages they reuse), one after the other in
# the background of the network-bound steps 4 and 5. Waited for before the summary.
go_pid=""
go_log="$cache/logs/go-tools.log"
if [ ! -e "$root/.toolchain/bin/pulumi-language-yaml" ] || [ -z "$official" ]; then
  mkdir -p "$cache/logs"
  if [ ! -x "$cache/bin/pulumi-language-yaml" ]; then
    step "building pulumi-language-yaml from Go modules in the background (first run only)"
  fi
  (
    "$here/build-pulumi-language-yaml.sh" "$cache/bin"
    if [ -z "$official" ]; then "$here/build-pulumi-sdkgen.sh" "$cache/bin"; fi
  ) >"$go_log" 2>&1 &
  go_pid=$!
fi

# 4. Deno, from the npm registry.
deno="$cache/deno/node_modules/.bin/deno"
# Compare captured output: `cmd | grep -q` under pipefail fails whenever grep exits first.
deno_banner=$("$deno" --version 2>/dev/null || true)
if [[ "$deno_banner" != "deno $deno_version "* ]]; then
  step "installing Deno $deno_version"
  npm install --silent --no-audit --no-fund --prefix "$cache/deno" "deno@$deno_version" >/dev/null
fi
ln -sfn "$deno" "$root/.toolchain/bin/deno"

# 5. The language host and the random/command plugins.
if [ -n "$official" ]; then
  installed=$(pulumi plugin ls 2>/dev/null || true)
  for spec in "random 4.21.4" "command 1.2.1"; do
    # shellcheck disable=SC2086
    set -- $spec
    grep -qE "^$1 +resource +${2//./\\.} " <<<"$installed" \
      || PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=false pulumi plugin install resource "$1" "$2"
  done
else
  "$here/install-offline-plugins.sh"
fi
if [ -n "$go_pid" ]; then
  if ! wait "$go_pid"; then
    tail -30 "$go_log" >&2
    die "building pulumi-language-yaml or pulumi-sdkgen failed (full log: $go_log)"
  fi
  ln -sfn "$cache/bin/pulumi-language-yaml" "$root/.toolchain/bin/pulumi-language-yaml"
  if [ -z "$official" ]; then
    ln -sfn "$cache/bin/pulumi-sdkgen" "$root/.toolchain/bin/pulumi-sdkgen"
  fi
fi

# 6. Say which language host serves each language: official, or our offline equivalent.
host_kind() {
  local link="$root/.toolchain/bin/pulumi-language-$1"
  if [ ! -e "$link" ]; then
    echo "none"
  elif grep -qs "Offline equivalent of the official" <(head -c 400 "$(readlink -f "$link")"); then
    echo "offline equivalent"
  elif [[ "$(readlink -f "$link")" == "$cache/"* ]]; then
    echo "official $(cut -d' ' -f1 "$cache/bin/.pulumi-language-$1.version"), built from Go modules"
  else
    echo "official, from $(dirname "$(readlink -f "$link")")"
  fi
}
# Not a step (nothing is installed here): printed on every run, as the last line's preamble.
for lang in python nodejs go yaml; do
  printf '    language host %-6s %s\n' "$lang:" "$(host_kind "$lang")"
done
step "toolchain ready: $(pulumi version), $("$deno" --version | head -1)"
