"""gunicorn settings, read from the environment (see README, "Production")."""

import os

bind = os.environ.get("APORTA_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("APORTA_WORKERS", "2"))
threads = int(os.environ.get("APORTA_THREADS", "4"))
worker_class = "gthread" if threads > 1 else "sync"
timeout = int(os.environ.get("APORTA_TIMEOUT", "120"))  # long exports stream within it
graceful_timeout = 30
keepalive = 5
max_requests = int(os.environ.get("APORTA_MAX_REQUESTS", "5000"))
max_requests_jitter = 500
accesslog = "-"
errorlog = "-"
forwarded_allow_ips = os.environ.get("APORTA_FORWARDED_ALLOW_IPS", "127.0.0.1")
