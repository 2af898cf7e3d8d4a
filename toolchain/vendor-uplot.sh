#!/usr/bin/env bash
# Refreshes the dashboard's chart library (uPlot, MIT) from the npm registry into the package
# data, so `supaqueue ui` needs no network and no build step at run time:
#   toolchain/vendor-uplot.sh        (then commit supaqueue/console/dashboard/static/vendor/)
set -euo pipefail
UPLOT_VERSION=1.6.32
here=$(cd "$(dirname "$0")" && pwd)
dest="$here/../supaqueue/console/dashboard/static/vendor"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack "uplot@$UPLOT_VERSION" --silent >/dev/null && tar xzf "uplot-$UPLOT_VERSION.tgz")
mkdir -p "$dest"
cp "$work/package/dist/uPlot.iife.min.js" "$work/package/dist/uPlot.min.css" "$dest/"
cp "$work/package/LICENSE" "$dest/uPlot.LICENSE"
echo "uPlot $UPLOT_VERSION -> $dest"
