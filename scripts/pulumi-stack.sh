#!/usr/bin/env bash
# Runs any pulumi command on a stack with the project's offline settings:
#   scripts/pulumi-stack.sh STACK ARGS...      e.g. scripts/pulumi-stack.sh dev refresh
# For the dev stack it also exports the local stack's settings (`supaqueue dev status -o env`)
# and the dev stack's fixed passphrase (dev only: production stacks must set
# PULUMI_CONFIG_PASSPHRASE or use a secrets provider of their own).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../toolchain/env.sh
. "$here/../toolchain/env.sh"
stack=${1?usage: pulumi-stack.sh STACK PULUMI_ARGS...}
shift
cd "$SUPAQUEUE_ROOT"
# DEV ONLY: a fixed, public passphrase, so the salt committed in Pulumi.dev.yaml works on every
# clone. It guards only the throw-away credentials of the local stack on 127.0.0.1.
dev_passphrase=supaqueue-local-dev-only
if [ "${SUPAQUEUE_STACK_READ_ONLY:-0}" = 1 ]; then
  # `supaqueue --stack` reads a stack's config (STACK "" : lists the stacks). It never creates a
  # stack (a typo must not make one) and needs no local stack environment: one pulumi call.
  if [ "$stack" = dev ]; then export PULUMI_CONFIG_PASSPHRASE=$dev_passphrase; fi
  if [ -z "$stack" ]; then exec pulumi "$@"; fi
  exec pulumi --stack "$stack" "$@"
fi
[ -n "$stack" ] || { echo "usage: pulumi-stack.sh STACK PULUMI_ARGS..." >&2; exit 2; }
# Only a file backend is a folder here; any other backend (s3://, https://, ...) is left alone.
case "$PULUMI_BACKEND_URL" in
  file://*) state_dir=${PULUMI_BACKEND_URL#file://}; mkdir -p "${state_dir%%\?*}" ;;
esac
if [ "$stack" = dev ]; then
  export PULUMI_CONFIG_PASSPHRASE=$dev_passphrase
  env_lines=$(supaqueue dev status -o env) || {
    echo "The local stack is not running: run 'make up' (or 'supaqueue dev up') first." >&2; exit 1; }
  set -a
  eval "$env_lines"
  set +a
fi
# The CLI cannot read NaN or infinity in a stack file and says so naming no key: name it first.
if [ -f "Pulumi.$stack.yaml" ] && [ -x "$SUPAQUEUE_ROOT/.venv/bin/python" ]; then
  "$SUPAQUEUE_ROOT/.venv/bin/python" -m supaqueue.stack_file "Pulumi.$stack.yaml" || exit 1
fi
if ! pulumi stack select "$stack" >/dev/null 2>&1; then
  # A missing stack is made only by a command that starts one (config, preview, up, import, stack):
  # a misspelt `destroy` or `refresh` must not make an empty stack and report success on it.
  case "${1:-}" in
    config|preview|up|import|stack) pulumi stack init "$stack" >/dev/null ;;
    *)
      echo "No stack '$stack' in this backend: 'pulumi ${1:-}' needs an existing stack and makes none." \
        "The stacks here:" >&2
      pulumi stack ls >&2 || true
      echo "Check the name; a new stack starts with 'scripts/pulumi-stack.sh $stack config set ...' or '... $stack up'." >&2
      exit 2 ;;
  esac
fi
exec pulumi --stack "$stack" "$@"
