"""Offline equivalent of Pulumi's Python language host (`pulumi-language-python`).

A LanguageRuntime gRPC server: it runs Pulumi programs through the SDK's own
`pulumi-language-python-exec` shim in the project's virtualenv and reports the resource
plugins that the installed Pulumi packages need.
"""

# Reported by GetPluginInfo: the CLI release this host stands in for, marked as ours.
VERSION = "3.274.1+supaqueue.offline"
