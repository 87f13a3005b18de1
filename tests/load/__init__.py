"""The load test: the example host under gunicorn on PostgreSQL (``python -m tests.load.run_load``)."""
