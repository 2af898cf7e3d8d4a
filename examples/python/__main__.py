"""A Pulumi program of your own: supaqueue in your Supabase project, two queues, a trigger and a
schedule."""

import os

import pulumi

from supaqueue import Supaqueue, args_from_config, load_stack_config

# Where to install it: the stack config (`supaqueue:target: local` takes the local stack's values
# from the environment; a production stack sets supaqueue:projectRef, dbUrl and accessToken).
args = args_from_config(load_stack_config(os.environ))
args["queues"] = [
    {"name": "emails", "edge_function_name": "send-email", "workers": 2, "max_attempts": 5},
    {"name": "thumbnails", "edge_function_name": "make-thumbnail", "rate_limit_per_second": 10},
]
# Each row inserted into public.signups is a job of "emails".
args["triggers"] = [
    {"name": "welcome-email", "table": "public.signups", "events": ["INSERT"], "queue": "emails"},
]
# Every night at 03:00 UTC, one job of "thumbnails".
args["schedules"] = [
    {"name": "nightly-thumbnails", "cron": "0 3 * * *", "queue": "thumbnails"},
]
installation = Supaqueue("supaqueue", args)

pulumi.export("queue_ids", installation.queue_ids)
