"""Small clients the dynamic providers use: Postgres (psycopg) and the Management API (httpx)."""
