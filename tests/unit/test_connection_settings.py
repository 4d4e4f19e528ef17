"""Connection settings carried to every client (sentinel, TLS, publish WAIT) and message signing,
without a server: parsing, masking, and the errors a user sees."""

from __future__ import annotations

import pickle
import ssl

import pytest

from engine import App, resp
from engine.config import mask_url, masked_setting, url_host
from engine.exceptions import ImproperlyConfigured
from engine.protocol import task as protocol
from engine.redisconn import (
    client_from_url,
    describe_error,
    sentinel_nodes,
    with_options,
)
from engine.resp.connection import Settings
from engine.resp.sentinel import FollowingConnection, PrimaryLocator
from engine.signing import HEADER, Signer, from_env

SENTINELS = "sentinel://:pw1@h1:26379/2;sentinel://:pw2@h2:26380/2?master_name=mymaster"
SECRET = "0123456789abcdef-secret"


def test_sentinel_url_is_parsed_as_kombu_reads_it() -> None:
    nodes, shared = sentinel_nodes(SENTINELS)
    assert nodes == [("h1", 26379), ("h2", 26380)]
    assert shared["db"] == 2 and shared["password"] == "pw1" and shared["master_name"] == "mymaster"
    assert mask_url(SENTINELS) == "sentinel://:****@h1:26379/2;sentinel://:****@h2:26380/2?master_name=mymaster"
    assert url_host(SENTINELS) == "h1:26379"


def test_sentinel_client_follows_the_sentinels() -> None:
    client = client_from_url(SENTINELS)
    assert client.connection_pool.connection_class is FollowingConnection
    assert isinstance(client.connection_pool.locate, PrimaryLocator)
    assert client.connection_pool.locate.master == "mymaster"
    assert client.connection_pool.locate.sentinels == [("h1", 26379), ("h2", 26380)]
    with pytest.raises(ImproperlyConfigured, match="master_name"):
        client_from_url("sentinel://h1:26379;sentinel://h2:26379")
    with pytest.raises(ImproperlyConfigured, match="sentinel://"):
        client_from_url("sentinel://h1:26379;redis://h2:6379?master_name=m")


def test_app_settings_ride_on_the_url_but_never_print() -> None:
    app = App(
        "t",
        broker="sentinel://h1:26379;sentinel://h2:26379",
        broker_transport_options={"master_name": "m", "sentinel_kwargs": {"password": "spw"}},
        tqctl_publish_wait_replicas=1,
        tqctl_publish_wait_timeout=0.25,
    )
    url = app.broker_url()
    assert str(url) == "sentinel://h1:26379;sentinel://h2:26379"
    assert url.options["master_name"] == "m" and url.options["wait_replicas"] == (1, 0.25)
    assert pickle.loads(pickle.dumps(url)).options == url.options
    assert masked_setting("broker_transport_options", app.conf.broker_transport_options) == {
        "master_name": "m",
        "sentinel_kwargs": {"password": "********"},
    }
    assert "spw" not in repr(app.conf.changes())


def test_tls_settings_in_both_forms() -> None:
    by_setting = client_from_url(
        with_options("redis://h:6380/0", use_ssl={"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": "/ca.pem"})
    )
    by_query = client_from_url("rediss://h:6380/0?ssl_cert_reqs=CERT_REQUIRED&ssl_ca_certs=/ca.pem&socket_timeout=3")
    for client in (by_setting, by_query):
        tls = client.connection_pool.settings.tls
        assert tls is not None and tls["ssl_cert_reqs"] == "required" and tls["ssl_ca_certs"] == "/ca.pem"
    assert by_query.connection_pool.settings.socket_timeout == 3.0
    with pytest.raises(ImproperlyConfigured, match="ssl_cert_reqs"):
        client_from_url("rediss://h/0?ssl_cert_reqs=sometimes")


def test_no_primary_is_one_short_line() -> None:
    locate = PrimaryLocator([("127.0.0.1", 1)], "m", Settings(socket_connect_timeout=1.0))
    with pytest.raises(resp.MasterNotFoundError) as caught:
        locate()
    line = describe_error("sentinel://:pw@127.0.0.1:1?master_name=m", caught.value)
    assert line == (
        "cannot reach broker at 127.0.0.1:1 (sentinel://:****@127.0.0.1:1?master_name=m): No master found "
        "for 'm' (sentinels: ConnectionError: Error 111 connecting to 127.0.0.1:1. Connection refused.)"
    )


def test_signer_signs_verifies_and_rotates() -> None:
    _, raw = protocol.build("t.add", [1, 2])
    new = Signer({"k2": SECRET, "k1": SECRET[::-1]}, "k2")
    old = Signer({"k1": SECRET[::-1]}, "k1")
    assert new.verify(new.sign(raw)) is None
    assert new.verify(old.sign(raw)) is None  # the old key id verifies while it is held
    assert "k2" in (old.verify(new.sign(raw)) or "")
    assert "unsigned" in (new.verify(raw) or "")
    signed = new.sign(raw).replace(b'"retries": 0', b'"retries": 1')
    assert "altered" in (new.verify(signed) or "")
    assert SECRET not in repr(new)


def test_signing_settings_errors_never_show_the_secret() -> None:
    assert Signer.from_conf(App("t").conf) is None
    with pytest.raises(ImproperlyConfigured) as caught:
        Signer({"k1": SECRET}, "k2")
    assert SECRET not in str(caught.value)
    with pytest.raises(ImproperlyConfigured, match="16"):
        Signer({"k1": "short"}, "k1")
    with pytest.raises(ImproperlyConfigured, match="KEY_ID"):
        from_env({"TQCTL_SIGNING_KEYS": f"k1={SECRET}"})
    signer = from_env({"TQCTL_SIGNING_KEYS": f"k1={SECRET}", "TQCTL_SIGNING_KEY_ID": "k1"})
    assert signer is not None and HEADER.encode() in signer.sign(protocol.build("t.add")[1])
