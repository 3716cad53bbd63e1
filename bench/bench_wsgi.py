"""The app exactly as wsgi.py builds it, plus the benchmarks' one-line baseline page.

Served as `gunicorn bench.bench_wsgi:app`, so the baseline goes through the same app,
extensions, after-request hooks and server as the pages it is compared with.
"""

from forum import create_app

app = create_app()


@app.get("/bench/hola")
def hola():
    return "hola"
