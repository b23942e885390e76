"""The MQTT sink over TLS with a password from the environment, against a real mosquitto
with two TLS listeners (server certificate from a throw-away CA made with the ``openssl``
CLI; one listener with password auth, one requiring a client certificate). Each bad
setting must give one clear logged error and counted failures, never an exception."""

from __future__ import annotations

import getpass
import logging
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from alpr_common.config import MqttSink, MqttTls
from alpr_common.sinks import MqttPublisher, build_sink
from alpr_common.sinks.mqtt import tls_context
from tests.test_sinks import MOSQUITTO, free_port, make_event, stop_process, wait_port, wait_until

OPENSSL = shutil.which("openssl")
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd")
USER, PASSWORD = "alpr", "s3cret-pw"
EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def openssl(*args: str, cwd: Path) -> None:
    assert OPENSSL is not None
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True)


def make_pki(d: Path) -> None:
    """ca.crt signs server.crt (names only `localhost`) and client.crt; other.crt is a CA
    that signed nothing."""
    for ca in ("ca", "other"):
        openssl("req", "-x509", *EC, "-keyout", f"{ca}.key", "-out", f"{ca}.crt", "-days", "2",
                "-subj", f"/CN=test-{ca}", "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)  # fmt: skip
    leaves = {
        "server": "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n",
        "client": "extendedKeyUsage=clientAuth\n",
    }
    for name, ext in leaves.items():
        (d / f"{name}.ext").write_text("basicConstraints=CA:FALSE\n" + ext)
        openssl("req", *EC, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN=alpr-{name}", cwd=d)  # fmt: skip
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.crt", "-days", "2",
                "-extfile", f"{name}.ext", cwd=d)  # fmt: skip


@dataclass
class TlsBroker:
    dir: Path
    password_port: int  # TLS + user/password (anonymous when mosquitto_passwd is missing)
    client_cert_port: int  # TLS + a client certificate signed by ca.crt
    passwords: bool  # password auth is on

    def tls(self, ca: str = "ca", client_cert: bool = False, **kw: Any) -> MqttTls:
        certs: dict[str, Any] = {"ca_file": self.dir / f"{ca}.crt"}
        if client_cert:
            certs |= {"cert_file": self.dir / "client.crt", "key_file": self.dir / "client.key"}
        return MqttTls(**certs, **kw)


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    if OPENSSL is None:
        pytest.skip("the openssl CLI is needed to make the test certificates")
    d = tmp_path_factory.mktemp("mqtt-tls")
    make_pki(d)
    passwords = MOSQUITTO_PASSWD is not None
    if passwords:
        assert MOSQUITTO_PASSWD is not None
        subprocess.run([MOSQUITTO_PASSWD, "-b", "-c", str(d / "passwd"), USER, PASSWORD],
                       check=True, capture_output=True)  # fmt: skip
        (d / "passwd").chmod(0o600)
    b = TlsBroker(d, free_port(), free_port(), passwords)
    tls = f"cafile {d}/ca.crt\ncertfile {d}/server.crt\nkeyfile {d}/server.key\n"
    auth = f"allow_anonymous false\npassword_file {d}/passwd\n" if passwords else ""
    auth = auth or "allow_anonymous true\n"
    (d / "mosquitto.conf").write_text(
        f"per_listener_settings true\nuser {getpass.getuser()}\n"
        f"listener {b.password_port} 127.0.0.1\n{tls}{auth}"
        f"listener {b.client_cert_port} 127.0.0.1\n{tls}require_certificate true\n"
        "allow_anonymous true\n"
    )
    with (d / "mosquitto.log").open("ab") as log:
        proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(d / "mosquitto.conf")], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        wait_port(b.password_port)
        wait_port(b.client_cert_port)
        yield b
    finally:
        stop_process(proc)


def publisher(cfg: MqttSink, tmp_path: Path) -> MqttPublisher:
    sink = build_sink(cfg, camera="cam1", output_dir=tmp_path)
    assert isinstance(sink, MqttPublisher)
    return sink


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("T_MQTT_USER", USER)
    monkeypatch.setenv("T_MQTT_PASS", PASSWORD)
    monkeypatch.setenv("T_MQTT_BAD", "not-" + PASSWORD)
    return {"username_env": "T_MQTT_USER", "password_env": "T_MQTT_PASS"}


# (case, host, listener, tls settings, password variable) -> connects
GOOD = [
    ("ca+password", "localhost", "password", {}, "T_MQTT_PASS"),
    ("insecure: IP not in cert", "127.0.0.1", "password", {"insecure": True}, "T_MQTT_PASS"),
    ("client certificate", "localhost", "client_cert", {"client_cert": True}, None),
]
# ... -> fails with this in the logged error
BAD = [
    ("wrong password", "localhost", "password", {}, "T_MQTT_BAD", "refused by the broker"),
    ("unknown CA", "localhost", "password", {"ca": "other"}, "T_MQTT_PASS",
     "CERTIFICATE_VERIFY_FAILED"),
    ("name not in cert", "127.0.0.1", "password", {}, "T_MQTT_PASS", "mismatch"),
    ("client cert missing", "localhost", "client_cert", {}, None, "closed before the broker"),
    ("plain TCP to TLS", "localhost", "password", None, "T_MQTT_PASS", "closed before the broker"),
]  # fmt: skip


def sink_config(
    b: TlsBroker, host: str, listener: str, tls: dict[str, Any] | None, password: str | None
) -> MqttSink:
    port = b.password_port if listener == "password" else b.client_cert_port
    creds = {"username_env": "T_MQTT_USER", "password_env": password} if password else {}
    return MqttSink(
        host=host, port=port, tls=b.tls(**tls) if tls is not None else None, **creds
    )  # fmt: skip


@pytest.mark.mqtt
@pytest.mark.parametrize(("case", "host", "listener", "tls", "password"), GOOD)
def test_tls_connects_and_delivers(
    tls_broker: TlsBroker,
    credentials: dict[str, str],
    tmp_path: Path,
    case: str,
    host: str,
    listener: str,
    tls: dict[str, Any],
    password: str | None,
) -> None:
    sink = publisher(sink_config(tls_broker, host, listener, tls, password), tmp_path)
    try:
        assert sink.wait_connected(5), f"{case}: not connected"
        sink.emit(make_event(1))
        assert wait_until(lambda: sink.stats()["delivered"] == 1)  # PUBACK over TLS
    finally:
        sink.close()
    assert sink.stats()["connect_failed"] == 0


@pytest.mark.mqtt
@pytest.mark.parametrize(("case", "host", "listener", "tls", "password", "error"), BAD)
def test_tls_or_auth_failure_is_logged_and_counted(
    tls_broker: TlsBroker,
    credentials: dict[str, str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    case: str,
    host: str,
    listener: str,
    tls: dict[str, Any] | None,
    password: str | None,
    error: str,
) -> None:
    if case == "wrong password" and not tls_broker.passwords:
        pytest.skip("mosquitto_passwd is not installed: the broker has no password auth")
    caplog.set_level(logging.INFO, logger="alpr_common.sinks.mqtt")
    sink = publisher(sink_config(tls_broker, host, listener, tls, password), tmp_path)
    try:
        sink.emit(make_event(1))  # queued, not lost, while the connection fails
        assert wait_until(lambda: sink.stats()["connect_failed"] >= 1), case
        assert not sink.connected

        def logged() -> list[str]:
            return [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]

        wanted = (error, f"{host}:{sink.port}")
        assert wait_until(lambda: any(all(w in m for w in wanted) for m in logged())), logged()
        assert not any(PASSWORD in r.getMessage() for r in caplog.records)
        assert sink.stats()["pending"] == 1
    finally:
        sink.close(timeout_s=0)
    assert sink.stats()["dropped"] == 1  # counted at close


@pytest.mark.mqtt
def test_password_from_environment_is_required(
    tls_broker: TlsBroker, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    if not tls_broker.passwords:
        pytest.skip("mosquitto_passwd is not installed: the broker has no password auth")
    cfg = sink_config(tls_broker, "localhost", "password", {}, "T_MQTT_PASS")
    monkeypatch.setenv("T_MQTT_USER", USER)
    monkeypatch.delenv("T_MQTT_PASS", raising=False)
    with pytest.raises(ValueError, match="T_MQTT_PASS"):
        publisher(cfg, tmp_path)
    anonymous = cfg.model_copy(update={"username_env": None, "password_env": None})
    sink = publisher(anonymous, tmp_path)  # the listener refuses anonymous clients
    try:
        assert wait_until(lambda: sink.stats()["connect_failed"] >= 1)
        assert not sink.connected
    finally:
        sink.close(timeout_s=0)


# --- configuration (no broker) ----------------------------------------------------------
@pytest.mark.parametrize(
    ("tls", "match"),
    [
        ({"ca_file": "missing/ca.crt"}, "tls.ca_file 'missing/ca.crt' is not a readable file"),
        ({"cert_file": "missing.crt", "key_file": "missing.key"}, "tls.cert_file"),
        ({"ca_file": "{garbage}"}, "cannot load the certificates"),
    ],
)
def test_tls_files_checked_when_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tls: dict[str, str], match: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "{garbage}").write_text("not a certificate")
    with pytest.raises(ValueError, match=match):
        tls_context(MqttTls.model_validate(tls))


@pytest.mark.parametrize(
    "tls", [{"cert_file": "c.crt"}, {"key_file": "c.key"}, {"insecure": "maybe"}, {"ca": "x"}]
)
def test_tls_config_rejected(tls: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        MqttSink.model_validate({"type": "mqtt", "tls": tls})


def test_tls_context_verifies_by_default() -> None:
    ctx = tls_context(MqttTls())  # system CAs
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    insecure = tls_context(MqttTls(insecure=True))
    assert insecure.verify_mode == ssl.CERT_REQUIRED and not insecure.check_hostname
