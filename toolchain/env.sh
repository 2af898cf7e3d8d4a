# Sourced by the Makefile, .ci/run and scripts: the offline-by-construction Pulumi environment.
# shellcheck shell=bash
SUPAQUEUE_ROOT=${SUPAQUEUE_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
SUPAQUEUE_CACHE=${SUPAQUEUE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/supaqueue}
export SUPAQUEUE_ROOT SUPAQUEUE_CACHE
export PATH="$SUPAQUEUE_ROOT/.toolchain/bin:$SUPAQUEUE_ROOT/.venv/bin:$PATH"
export PULUMI_HOME="$SUPAQUEUE_CACHE/pulumi-home"
export PULUMI_SKIP_UPDATE_CHECK=true
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
export PULUMI_BACKEND_URL=${PULUMI_BACKEND_URL:-file://$SUPAQUEUE_ROOT/.pulumi-state}
export DENO_DIR="$SUPAQUEUE_CACHE/deno-dir"
export DENO_NO_UPDATE_CHECK=1
