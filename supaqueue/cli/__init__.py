"""The `supaqueue` command: a small root that mounts `supaqueue dev …` (local_stack) and the
operator commands (console), without either knowing the other."""
