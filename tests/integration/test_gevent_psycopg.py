"""The api runs under gunicorn's gevent workers: psycopg 3 must yield to other greenlets while it waits."""

import subprocess
import sys
import textwrap

from sqlalchemy.engine import make_url

PROBE = textwrap.dedent(
    """
    from gevent import monkey; monkey.patch_all()
    import sys, time, gevent, psycopg
    def nap():
        with psycopg.connect(sys.argv[1]) as connection:
            connection.execute("SELECT pg_sleep(0.5)")
    started = time.monotonic()
    gevent.joinall([gevent.spawn(nap) for _ in range(10)], raise_error=True)
    print(round(time.monotonic() - started, 2))
    """
)


def test_ten_concurrent_half_second_queries_finish_together_under_gevent(database_url):
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    result = subprocess.run(
        [sys.executable, "-c", PROBE, dsn], capture_output=True, text=True, timeout=60, check=True
    )
    elapsed = float(result.stdout.strip())
    assert elapsed < 2.0, f"ten 0.5 s queries took {elapsed} s: psycopg is blocking the gevent hub"
