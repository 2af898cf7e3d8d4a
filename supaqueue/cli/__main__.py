import sys

from supaqueue.cli.main import main

sys.exit(main())
