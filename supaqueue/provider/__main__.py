from supaqueue.provider.server import main

main()
