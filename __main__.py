"""The supaqueue Pulumi program: read the stack config, declare the installation and its queues."""

import os
from pathlib import Path

import pulumi

from components.config import load_stack_config
from components.supaqueue import Supaqueue, args_from_config

# The Edge Functions and migrations deployed are the ones beside this program.
HERE = Path(__file__).resolve().parent

args = args_from_config(load_stack_config(os.environ))
args["edge_dir"] = str(HERE / "edge")
args["migrations_dir"] = str(HERE / "sql")
installation = Supaqueue("supaqueue", args)

pulumi.export("function_url", installation.function_url)
pulumi.export("schema_version", installation.schema_version)
pulumi.export("queue_ids", installation.queue_ids)
pulumi.export("schedule_next_runs", installation.schedule_next_runs)
