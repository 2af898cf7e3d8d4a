"""supaqueue's Pulumi library: components, dynamic providers, clients and config validation."""
