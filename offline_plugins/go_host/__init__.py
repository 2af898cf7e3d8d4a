"""Offline equivalent of Pulumi's Go language host (`pulumi-language-go`).

A LanguageRuntime gRPC server: it builds a Go program with the Go toolchain (`go build`), runs the
binary with the Pulumi environment variables the Go SDK reads, and reports the resource plugins
named by the pulumi-plugin.json files of the program's required modules.
"""

# Reported by GetPluginInfo: the CLI release this host stands in for, marked as ours.
VERSION = "3.274.1+supaqueue.offline"
