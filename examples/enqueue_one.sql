SELECT supaqueue.enqueue('emails', '{"to": "ada@example.com"}');
