"""What the user sees when AWS cannot be reached, answers nonsense, or the user presses Ctrl-C.

Real parts: local sockets stand in for a closed port, an endpoint that accepts and never answers, and a
proxy that answers garbage (loopback only); the interrupt tests send a real SIGINT to a real CLI process,
and drive the deploy steps with KeyboardInterrupt raised where a user's Ctrl-C would land.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mastofargate import aws
from mastofargate.aws import AwsError, Unreachable
from mastofargate.deploy import jobs, rollout, stacks
from mastofargate.errors import EXIT_INTERRUPTED, Interrupted
from tests.conftest import interruptible, make_config, plain_run
from tests.test_rollout import plan_touching_web

CONFIG = (
    '[server]\ndomain = "social.example.org"\nadmin_email = "admin@example.org"\n'
    '[aws]\nname = "social"\nhosted_zone_id = "Z0123456789EXAMPLE"\n'
)


@pytest.fixture
def fresh_clients(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    aws.reset_clients()
    yield
    aws.reset_clients()


@contextlib.contextmanager
def silent_server() -> Iterator[str]:
    """Accepts connections and never answers (a black-holed endpoint)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(sock.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        sock.close()


@contextlib.contextmanager
def garbage_server() -> Iterator[str]:
    """Answers every request with 200 and a body that is not an AWS response (a captive proxy)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            body = b"<html><body>Please log in to the hotel wifi</body"
            self.send_response(200)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # closed once the block ends


def test_a_mistyped_profile_is_a_usage_error_naming_it(fresh_clients: None, monkeypatch, tmp_path: Path) -> None:
    (tmp_path / "config").write_text("[profile real]\nregion = us-east-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_PROFILE", "raal")
    with pytest.raises(AwsError) as err:
        aws.account_id("us-east-1")
    assert err.value.exit_code == 2
    assert "'raal' does not exist" in err.value.what and "list-profiles" in err.value.fix


def test_a_closed_port_fails_fast_with_what_to_check(fresh_clients: None, monkeypatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", closed_port())
    started = time.monotonic()
    with pytest.raises(Unreachable) as err:
        aws.account_id("us-east-1")
    assert time.monotonic() - started < 15
    assert "Cannot reach AWS while reading the AWS account" in err.value.what
    assert "AWS_ENDPOINT_URL" in err.value.fix


def test_an_endpoint_that_never_answers_times_out_and_says_it_is_waiting(
    fresh_clients: None, monkeypatch, capsys
) -> None:
    monkeypatch.setattr(aws, "READ_TIMEOUT", 1)
    monkeypatch.setattr(aws, "SLOW_CALL_NOTICE", 0.5)
    with silent_server() as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        started = time.monotonic()
        with pytest.raises(Unreachable) as err:
            aws.account_id("us-east-1")
    assert time.monotonic() - started < 3 * aws.MAX_ATTEMPTS + 5
    assert err.value.exit_code == 3
    assert "did not answer in time" in err.value.what
    assert "still waiting for AWS (reading the AWS account)" in capsys.readouterr().err


def test_a_proxy_answering_garbage_is_named_as_such(fresh_clients: None, monkeypatch) -> None:
    with garbage_server() as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        with pytest.raises(Unreachable) as err:
            aws.account_id("us-east-1")
    assert "not an AWS response" in err.value.what
    assert "HTTPS_PROXY" in err.value.fix


# --- Ctrl-C --------------------------------------------------------------------------------------------


def interrupt(*args: object, **kwargs: object) -> None:
    raise KeyboardInterrupt


def test_an_interrupt_while_the_stack_changes_says_cloudformation_carries_on(monkeypatch) -> None:
    run = plain_run(make_config())
    monkeypatch.setattr(rollout, "RolloutMonitor", lambda run, services: type("M", (), {"tick": lambda self: None})())
    monkeypatch.setattr(stacks, "execute", interrupt)
    with pytest.raises(Interrupted) as err:
        rollout.apply(run, plan_touching_web(), timeout=60)
    assert err.value.exit_code == EXIT_INTERRUPTED
    assert "CloudFormation is changing social-app" in err.value.why
    assert "mastofargate status" in err.value.fix and "mastofargate deploy" in err.value.fix
    assert run.in_flight == []


def test_an_interrupt_during_a_one_off_task_names_the_task(monkeypatch) -> None:
    run = plain_run(make_config())
    monkeypatch.setattr("mastofargate.deploy.ecs.run_one_off", interrupt)
    with pytest.raises(Interrupted) as err:
        jobs.run_job(run, "migrate-pre", None, timeout=60)
    assert "one-off task social-migrate-pre may still run" in err.value.why
    assert "mastofargate logs migrate-pre" in err.value.why


def test_an_interrupt_before_anything_started_says_nothing_is_in_flight() -> None:
    run = plain_run(make_config())
    with pytest.raises(Interrupted) as err, run.interruptible():
        raise KeyboardInterrupt
    assert "nothing was in flight" in err.value.why


def test_ctrl_c_on_a_real_cli_process_prints_what_happened_and_exits_130(tmp_path: Path) -> None:
    """A real SIGINT while the CLI waits for AWS (an endpoint that never answers)."""
    config = tmp_path / "mastofargate.toml"
    config.write_text(CONFIG)
    with silent_server() as url:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "AWS_ENDPOINT_URL": url,
            "AWS_ACCESS_KEY_ID": "x",
            "AWS_SECRET_ACCESS_KEY": "x",
            "CI": "1",
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "mastofargate", "deploy", "--config", str(config), "--yes"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
            preexec_fn=interruptible,
        )
        time.sleep(2.5)  # in preflight, waiting for STS
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == EXIT_INTERRUPTED, out + err
    assert "Interrupted." in err and "nothing was in flight" in err
    assert "Traceback" not in err
