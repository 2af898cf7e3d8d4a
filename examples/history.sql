SELECT * FROM supaqueue.queue_stats;            -- per-queue counts, oldest pending age, last minute,
                                                -- paused (the stack's) and paused_by_operator_since,
                                                -- held_until / hold_reason / held_keys (Retry-After)
SELECT * FROM supaqueue.job_attempt ORDER BY started_at DESC LIMIT 20;  -- per-attempt history
