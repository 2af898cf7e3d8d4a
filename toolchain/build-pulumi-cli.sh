#!/usr/bin/env bash
# Builds the Pulumi CLI from the Go module proxy into $1 (a cache folder), once.
# No registry we reach ships the CLI binary; docs/design.md records the recipe.
set -euo pipefail
dest=${1:?usage: build-pulumi-cli.sh DEST_DIR}
version=${PULUMI_CLI_VERSION:-v3.274.1}
mkdir -p "$dest"
if [ -x "$dest/pulumi" ] && [ "$("$dest/pulumi" version 2>/dev/null || true)" = "$version" ]; then
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
export GOFLAGS=-mod=mod GOTOOLCHAIN=local
go mod init supaqueue.local/pulumi-cli >/dev/null 2>&1
# `go install pkg@version` refuses modules with replace directives; a tool
# directive in a wrapper module pins every dependency of the main package.
go get -tool "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi@${version}"
go mod edit -replace github.com/atotto/clipboard=github.com/tgummerer/clipboard@v0.0.0-20241001131231-d02d263e614e
go mod tidy >/dev/null 2>&1 || true
CGO_ENABLED=0 go build -tags osusergo,grpcnotrace \
  -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=${version}" \
  -o "$work/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
# The exec shim and the dynamic-provider plugin ship in the sdk/v3 module zip.
sdkdir=$(go list -m -f '{{.Dir}}' "github.com/pulumi/pulumi/sdk/v3")
install -m 0755 "$sdkdir/python/cmd/pulumi-language-python-exec" "$dest/pulumi-language-python-exec"
install -m 0755 "$sdkdir/python/dist/pulumi-resource-pulumi-python" "$dest/pulumi-resource-pulumi-python"
install -m 0755 "$work/pulumi" "$dest/pulumi.tmp"
mv "$dest/pulumi.tmp" "$dest/pulumi"
"$dest/pulumi" version
