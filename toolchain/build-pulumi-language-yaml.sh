#!/usr/bin/env bash
# Builds Pulumi's YAML language host (pulumi-language-yaml) from the Go module proxy into $1
# (a cache folder), once per version. Same recipe as build-pulumi-cli.sh: a wrapper module with
# a tool directive, here with the CLI's own pulumi/pkg and pulumi/sdk versions pinned, so the host
# speaks the CLI's protocol and reuses the CLI build's compiled packages.
set -euo pipefail
dest=${1:?usage: build-pulumi-language-yaml.sh DEST_DIR}
version=${PULUMI_YAML_VERSION:-v1.38.1}
sdk=${PULUMI_CLI_VERSION:-v3.274.1}
stamp="$dest/.pulumi-language-yaml.version"
mkdir -p "$dest"
if [ -x "$dest/pulumi-language-yaml" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$version $sdk" ]; then
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
export GOFLAGS=-mod=mod GOTOOLCHAIN=local
go mod init supaqueue.local/pulumi-language-yaml >/dev/null 2>&1
go get -tool "github.com/pulumi/pulumi-yaml/cmd/pulumi-language-yaml@${version}"
go get "github.com/pulumi/pulumi/pkg/v3@${sdk}" "github.com/pulumi/pulumi/sdk/v3@${sdk}"
go mod tidy >/dev/null 2>&1 || true
CGO_ENABLED=0 go build -tags osusergo,grpcnotrace \
  -ldflags "-s -w -X github.com/pulumi/pulumi-yaml/pkg/version.Version=${version}" \
  -o "$work/pulumi-language-yaml" github.com/pulumi/pulumi-yaml/cmd/pulumi-language-yaml
install -m 0755 "$work/pulumi-language-yaml" "$dest/.pulumi-language-yaml.tmp"
mv -f "$dest/.pulumi-language-yaml.tmp" "$dest/pulumi-language-yaml"
echo "$version $sdk" >"$stamp"
echo "pulumi-language-yaml $version (pulumi sdk $sdk)"
