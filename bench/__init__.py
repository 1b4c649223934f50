"""`make bench`: the performance figures of issue 2 item 12, measured on SQLite and PostgreSQL."""
