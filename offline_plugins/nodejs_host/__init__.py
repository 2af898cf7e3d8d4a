"""Offline equivalent of Pulumi's Node.js language host (`pulumi-language-nodejs`).

A LanguageRuntime gRPC server: it runs TypeScript/JavaScript programs with `node` through the
`@pulumi/pulumi` SDK's own runner (`@pulumi/pulumi/cmd/run`, which loads TypeScript through the
SDK's bundled ts-node) and reports the resource plugins that the packages in node_modules need.
"""

# Reported by GetPluginInfo: the CLI release this host stands in for, marked as ours.
VERSION = "3.274.1+supaqueue.offline"
