"""The supaqueue Pulumi program: read the stack config, declare the installation and its queues."""

import os
from pathlib import Path

import pulumi

from supaqueue.config import load_stack_config
from supaqueue.installation import Supaqueue, args_from_config

# The demo's target function is beside this program; the dispatcher and the SQL ship in the package.
HERE = Path(__file__).resolve().parent

args = args_from_config(load_stack_config(os.environ))
args["edge_dir"] = str(HERE / "edge")
installation = Supaqueue("supaqueue", args)

pulumi.export("function_url", installation.function_url)
pulumi.export("schema_version", installation.schema_version)
pulumi.export("queue_ids", installation.queue_ids)
pulumi.export("schedule_next_runs", installation.schedule_next_runs)
