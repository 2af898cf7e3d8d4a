#!/usr/bin/env bash
# Builds pulumi-sdkgen (toolchain/sdkgen/main.go: the official language hosts' GeneratePackage on
# pulumi/pkg/v3's codegen, for the offline hosts) into $1 (a cache folder), once per source and
# version. The CLI's own pulumi/pkg and pulumi/sdk versions, so it reuses the CLI's compiled packages.
set -euo pipefail
dest=${1:?usage: build-pulumi-sdkgen.sh DEST_DIR}
here=$(cd "$(dirname "$0")" && pwd)
sdk=${PULUMI_CLI_VERSION:-v3.274.1}
want="$(sha256sum "$here/sdkgen/main.go" | cut -c1-16) $sdk"
stamp="$dest/.pulumi-sdkgen.version"
mkdir -p "$dest"
if [ -x "$dest/pulumi-sdkgen" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
export GOFLAGS=-mod=mod GOTOOLCHAIN=local
go mod init supaqueue.local/pulumi-sdkgen >/dev/null 2>&1
cp "$here/sdkgen/main.go" .
go get "github.com/pulumi/pulumi/pkg/v3@${sdk}" "github.com/pulumi/pulumi/sdk/v3@${sdk}"
go mod tidy >/dev/null 2>&1 || true
CGO_ENABLED=0 go build -tags osusergo,grpcnotrace -ldflags "-s -w" -o "$work/pulumi-sdkgen" .
install -m 0755 "$work/pulumi-sdkgen" "$dest/.pulumi-sdkgen.tmp"
mv -f "$dest/.pulumi-sdkgen.tmp" "$dest/pulumi-sdkgen"
echo "$want" >"$stamp"
echo "pulumi-sdkgen (pulumi pkg $sdk)"
