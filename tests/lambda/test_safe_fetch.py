"""URL bodies: fetched only under the rules, from real HTTPS servers on 127.0.0.1 with a test certificate.

The positive cases need 127.0.0.1 to count as an allowed public host; they build their own UrlFetcher with
a loopback-only address rule. The proxy's own fetcher takes no such argument (last test)."""

import ipaddress
import json
import socket
import threading
import time

import pytest

from kennel_proxy import safe_fetch
from kennel_proxy.proxy import Proxy
from kennel_proxy.safe_fetch import FetchPolicy, UrlFetcher
from kennel_proxy.settings import Settings

from .conftest import ENDPOINT, TEST_HOST_NAME, settings

IMAGE = b"\xff\xd8\xff\xe0 a small jpeg \xff\xd9"


def loopback_only(address) -> bool:
    return address.is_loopback


def server_or_public(address) -> bool:
    """The real rule, with one exception: the test server's own 127.0.0.1."""
    return address == ipaddress.IPv4Address("127.0.0.1") or safe_fetch.is_public_address(address)


def fetcher_for(certificate, hosts: set[str], max_bytes: int = 1000, read_timeout_s: float = 2.0, **kwargs):
    policy = FetchPolicy(
        allowed_hosts=frozenset(hosts),
        max_bytes=max_bytes,
        connect_timeout_s=1.0,
        read_timeout_s=read_timeout_s,
    )
    return UrlFetcher(policy, ssl_context=certificate.client_context(), **kwargs)


def image_routes(request):
    routes = {
        "/dog.jpg": (200, {"Content-Type": "image/jpeg"}, IMAGE),
        # moto decodes request bodies as UTF-8, so what the handler test sends on to it must decode.
        "/ascii.jpg": (200, {"Content-Type": "image/jpeg"}, b"ascii stand-in image"),
        "/closing": (200, {"Content-Type": "image/jpeg", "Connection": "close"}, IMAGE),
        "/stream": (200, {"Content-Type": "application/octet-stream"}, IMAGE),
        "/page": (200, {"Content-Type": "text/html"}, b"<html></html>"),
        "/big": (200, {"Content-Type": "image/jpeg"}, bytes(5000)),
        "/slow": (200, {"Content-Type": "image/jpeg"}, IMAGE, 30),
        "/missing": (404, {}, b"not found"),
        "/hop": (302, {"Location": "/dog.jpg"}, b""),
        "/away": (302, {"Location": "https://elsewhere.example/dog.jpg"}, b""),
        "/plain": (302, {"Location": "http://127.0.0.1/dog.jpg"}, b""),
        "/metadata": (302, {"Location": "https://169.254.169.254/latest/meta-data/"}, b""),
        "/loop": (302, {"Location": "/loop"}, b""),
    }
    return routes[request.path]


@pytest.fixture
def images(http_server):
    return http_server(image_routes, tls=True)


def test_an_allowed_host_serves_the_image(images, certificate):
    fetched = fetcher_for(certificate, {f"127.0.0.1:{images.port}"}, address_allowed=loopback_only).fetch(
        f"{images.url}/dog.jpg"
    )

    assert fetched.body == IMAGE
    assert fetched.content_type == "image/jpeg"


def test_an_answer_that_closes_the_connection_is_read_whole(images, certificate):
    # http.client drops the connection's socket when the answer says it will close.
    fetcher = fetcher_for(certificate, {f"127.0.0.1:{images.port}"}, address_allowed=loopback_only)

    assert fetcher.fetch(f"{images.url}/closing").body == IMAGE


def test_octet_stream_is_sent_on_as_application_x_image(images, certificate):
    fetcher = fetcher_for(certificate, {f"127.0.0.1:{images.port}"}, address_allowed=loopback_only)

    assert fetcher.fetch(f"{images.url}/stream").content_type == "application/x-image"


def test_a_redirect_within_the_allow_list_is_followed(images, certificate):
    fetcher = fetcher_for(certificate, {f"127.0.0.1:{images.port}"}, address_allowed=loopback_only)

    assert fetcher.fetch(f"{images.url}/hop").body == IMAGE
    assert [r.path for r in images.requests] == ["/hop", "/dog.jpg"]


def test_a_name_connects_to_its_checked_address_and_tls_checks_the_name(images, certificate):
    resolved = []

    def resolve(host, port):
        resolved.append(host)
        return ["127.0.0.1"]

    fetcher = fetcher_for(
        certificate, {f"{TEST_HOST_NAME}:{images.port}"}, address_allowed=loopback_only, resolve=resolve
    )

    assert fetcher.fetch(f"https://{TEST_HOST_NAME}:{images.port}/dog.jpg").body == IMAGE
    assert resolved == [TEST_HOST_NAME]
    assert images.requests[0].headers["host"] == f"{TEST_HOST_NAME}:{images.port}"


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "http://127.0.0.1/dog.jpg",
        "ftp://127.0.0.1/dog.jpg",
        "https://user:pw@127.0.0.1/dog.jpg",
        "https://not-allowed.example/dog.jpg",
        "https://127.0.0.1:1/dog.jpg",
        "https://127.0.0.1:notaport/dog.jpg",
        "//127.0.0.1/dog.jpg",
    ],
)
def test_urls_outside_the_rules_are_refused_before_any_lookup(url, certificate):
    def resolve(host, port):
        raise AssertionError(f"{host} was looked up")

    fetcher = fetcher_for(certificate, {"127.0.0.1"}, address_allowed=loopback_only, resolve=resolve)

    with pytest.raises(safe_fetch.UrlNotAllowed):
        fetcher.fetch(url)


@pytest.mark.parametrize(
    "host", ["169.254.169.254", "localhost", "127.0.0.1", "10.0.0.7", "192.168.1.10", "100.64.0.1", "[::1]"]
)
def test_non_public_addresses_are_refused_even_when_allow_listed(host, certificate):
    name = host.strip("[]")
    fetcher = fetcher_for(certificate, {name})

    with pytest.raises(safe_fetch.UrlNotAllowed, match="non-public"):
        fetcher.fetch(f"https://{host}/latest/meta-data/")


def test_every_resolved_address_must_pass(certificate, images):
    fetcher = fetcher_for(
        certificate,
        {f"{TEST_HOST_NAME}:{images.port}"},
        address_allowed=loopback_only,
        resolve=lambda host, port: ["127.0.0.1", "10.0.0.7"],
    )

    with pytest.raises(safe_fetch.UrlNotAllowed):
        fetcher.fetch(f"https://{TEST_HOST_NAME}:{images.port}/dog.jpg")
    assert images.requests == []


@pytest.mark.parametrize("path", ["/away", "/plain", "/metadata"])
def test_redirects_off_the_rules_are_refused(images, certificate, path):
    fetcher = fetcher_for(
        certificate, {f"127.0.0.1:{images.port}", "169.254.169.254"}, address_allowed=loopback_only
    )

    with pytest.raises(safe_fetch.UrlNotAllowed):
        fetcher.fetch(f"{images.url}{path}")


def test_a_redirect_loop_ends(images, certificate):
    fetcher = fetcher_for(certificate, {f"127.0.0.1:{images.port}"}, address_allowed=loopback_only)

    with pytest.raises(safe_fetch.FetchError, match="redirects"):
        fetcher.fetch(f"{images.url}/loop")


def test_an_oversized_body_is_refused(images, certificate):
    fetcher = fetcher_for(
        certificate, {f"127.0.0.1:{images.port}"}, address_allowed=loopback_only, max_bytes=4999
    )

    with pytest.raises(safe_fetch.ImageTooLarge):
        fetcher.fetch(f"{images.url}/big")


def test_an_oversized_body_without_content_length_is_cut_off(http_server, certificate):
    def chunked(request):
        body = b"".join(b"%x\r\n%s\r\n" % (1000, bytes(1000)) for _ in range(10)) + b"0\r\n\r\n"
        return (
            200,
            {"Content-Type": "image/jpeg", "Transfer-Encoding": "chunked", "Content-Length": None},
            body,
        )

    server = http_server(chunked, tls=True)
    fetcher = fetcher_for(
        certificate, {f"127.0.0.1:{server.port}"}, address_allowed=loopback_only, max_bytes=4096
    )

    with pytest.raises(safe_fetch.ImageTooLarge):
        fetcher.fetch(f"{server.url}/stream")


def test_a_slow_server_times_out(images, certificate):
    fetcher = fetcher_for(
        certificate, {f"127.0.0.1:{images.port}"}, address_allowed=loopback_only, read_timeout_s=0.3
    )

    with pytest.raises(safe_fetch.FetchTimeout):
        fetcher.fetch(f"{images.url}/slow")


def test_an_untrusted_certificate_fails(images, certificate):
    policy = FetchPolicy(frozenset({f"127.0.0.1:{images.port}"}), 1000, 1.0, 2.0)
    fetcher = UrlFetcher(policy, address_allowed=loopback_only)

    with pytest.raises(safe_fetch.FetchError, match="TLS"):
        fetcher.fetch(f"{images.url}/dog.jpg")


@pytest.mark.parametrize(
    ("path", "error"), [("/page", safe_fetch.NotAnImage), ("/missing", safe_fetch.FetchError)]
)
def test_answers_that_are_not_images(images, certificate, path, error):
    fetcher = fetcher_for(certificate, {f"127.0.0.1:{images.port}"}, address_allowed=loopback_only)

    with pytest.raises(error):
        fetcher.fetch(f"{images.url}{path}")


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.215.14", True),
        ("2606:4700::1111", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("fd00::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:169.254.169.254", False),
        ("2002:a00:1::", False),
        ("2001:db8::1", False),
        ("::", False),
    ],
)
def test_public_address_rule(address, public):
    assert safe_fetch.is_public_address(ipaddress.ip_address(address)) is public


# The special-purpose blocks, written out here from the IANA registries (not read from safe_fetch): each
# must be refused from its first address to its last, whatever this Python's ipaddress tables say.
SPECIAL_PURPOSE_BLOCKS = [
    # IANA IPv4 Special-Purpose Address Registry
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.0.0/29",
    "192.0.0.8/32",
    "192.0.0.9/32",
    "192.0.0.10/32",
    "192.0.0.170/32",
    "192.0.0.171/32",
    "192.0.2.0/24",
    "192.31.196.0/24",
    "192.52.193.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "192.175.48.0/24",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "240.0.0.0/4",
    "255.255.255.255/32",
    "224.0.0.0/4",  # multicast
    # IANA IPv6 Special-Purpose Address Registry (the blocks that carry IPv4 are tested further down)
    "::/128",
    "::1/128",
    "64:ff9b:1::/48",
    "100::/64",
    "100:0:0:1::/64",
    "2001::/23",
    "2001::/32",
    "2001:1::1/128",
    "2001:1::2/128",
    "2001:1::3/128",
    "2001:2::/48",
    "2001:3::/32",
    "2001:4:112::/48",
    "2001:10::/28",
    "2001:20::/28",
    "2001:30::/28",
    "2001:db8::/32",
    "2620:4f:8000::/48",
    "3fff::/20",
    "5f00::/16",
    "fc00::/7",
    "fe80::/10",
    "fec0::/10",  # site-local, deprecated
    "ff00::/8",  # multicast
]


@pytest.mark.parametrize("block", SPECIAL_PURPOSE_BLOCKS)
def test_every_special_purpose_block_is_refused_end_to_end(block):
    network = ipaddress.ip_network(block)
    first, last = network[0], network[-1]
    middle = network[network.num_addresses // 2]

    for address in (first, middle, last):
        assert safe_fetch.is_public_address(address) is False, address


@pytest.mark.parametrize(
    "address",
    [
        "100.63.255.255",  # just outside 100.64.0.0/10
        "100.128.0.0",
        "192.0.1.0",  # between 192.0.0.0/24 and 192.0.2.0/24
        "192.88.98.255",  # just outside 192.88.99.0/24
        "198.17.255.255",  # just outside 198.18.0.0/15
        "198.20.0.0",
        "223.255.255.255",  # the last address before multicast
        "2001:200::1",  # just past 2001::/23
        "2001:db9::1",  # just past 2001:db8::/32
        "3fff:1000::1",  # just past 3fff::/20
        "3ffe:ffff::1",
    ],
)
def test_the_special_purpose_blocks_end_where_the_registries_say(address):
    assert safe_fetch.is_public_address(ipaddress.ip_address(address)) is True


# Each way an IPv6 address carries an IPv4 address, as a function of that IPv4 address.
IPV4_CARRIERS = {
    "mapped": lambda v4: (0xFFFF << 32) | v4,
    "compatible": lambda v4: v4,
    "translated": lambda v4: (0xFFFF << 48) | v4,
    "6to4": lambda v4: (0x2002 << 112) | (v4 << 80) | 1,
    "nat64": lambda v4: (0x64FF9B << 96) | v4,
}


@pytest.mark.parametrize("carrier", IPV4_CARRIERS)
@pytest.mark.parametrize(
    ("ipv4", "public"),
    [
        ("93.184.215.14", True),
        ("169.254.169.254", False),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("100.64.0.1", False),
        ("192.0.0.1", False),
        ("192.0.0.8", False),
        ("192.88.99.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
    ],
)
def test_ipv6_carrying_ipv4_is_judged_by_the_ipv4_address(carrier, ipv4, public):
    address = ipaddress.IPv6Address(IPV4_CARRIERS[carrier](int(ipaddress.IPv4Address(ipv4))))

    assert safe_fetch.embedded_ipv4(address) == ipaddress.IPv4Address(ipv4)
    assert safe_fetch.is_public_address(address) is public


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b::a9fe:a9fe",  # 169.254.169.254 through the NAT64 well-known prefix
        "64:ff9b::7f00:1",  # 127.0.0.1 the same way
        "64:ff9b:1::a00:1",  # NAT64 local-use prefix (RFC 8215)
        "64:ff9b:1::5db8:d70e",  # ... whatever it carries
        "64:ff9b:1:ffff:ffff:5db8:d70e:0",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo, with a public server and client
        "2001::a9fe:a9fe",
        "fec0::1",  # site-local
        "4000::1",  # not allocated by the IETF
        "100::1",  # discard-only
    ],
)
def test_ipv6_ranges_refused_whatever_they_carry(address):
    assert safe_fetch.is_public_address(ipaddress.ip_address(address)) is False


def redirecting_to_a_name(http_server):
    """A TLS server on 127.0.0.1 whose /hop redirects to images.kennel.test on the same port."""

    def route(request):
        if request.path == "/hop":
            return 302, {"Location": f"https://{TEST_HOST_NAME}:{server.port}/dog.jpg"}, b""
        return 200, {"Content-Type": "image/jpeg"}, IMAGE

    server = http_server(route, tls=True)
    return server


def name_resolving_to(address: str):
    resolved = []

    def resolve(host, port):
        resolved.append(host)
        return {"127.0.0.1": ["127.0.0.1"], TEST_HOST_NAME: [address]}[host]

    return resolve, resolved


def test_a_redirect_to_a_name_with_a_public_address_is_followed(http_server, certificate):
    server = redirecting_to_a_name(http_server)
    resolve, resolved = name_resolving_to("127.0.0.1")
    fetcher = fetcher_for(
        certificate,
        {f"127.0.0.1:{server.port}", f"{TEST_HOST_NAME}:{server.port}"},
        address_allowed=server_or_public,
        resolve=resolve,
    )

    assert fetcher.fetch(f"{server.url}/hop").body == IMAGE
    assert resolved == ["127.0.0.1", TEST_HOST_NAME]
    assert [r.path for r in server.requests] == ["/hop", "/dog.jpg"]


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b::a9fe:a9fe",
        "64:ff9b::7f00:1",
        "64:ff9b:1::a00:1",
        "::ffff:a9fe:a9fe",
        "::a9fe:a9fe",
        "::ffff:0:a9fe:a9fe",
        "2002:a9fe:a9fe::1",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",
    ],
)
def test_a_redirect_to_a_name_that_resolves_to_a_carried_non_public_ipv4_is_refused(
    http_server, certificate, address
):
    server = redirecting_to_a_name(http_server)
    resolve, resolved = name_resolving_to(address)
    fetcher = fetcher_for(
        certificate,
        {f"127.0.0.1:{server.port}", f"{TEST_HOST_NAME}:{server.port}"},
        address_allowed=server_or_public,
        resolve=resolve,
    )

    with pytest.raises(safe_fetch.UrlNotAllowed, match="non-public"):
        fetcher.fetch(f"{server.url}/hop")
    assert resolved == ["127.0.0.1", TEST_HOST_NAME]
    assert [r.path for r in server.requests] == ["/hop"]


class HungResolver:
    """A resolver that does not answer until `release()`; it then answers 127.0.0.1. It gives up by itself
    after 30 s only so that a fetcher which waits for it fails its test (with a connection error, not 504)
    instead of hanging the run."""

    def __init__(self):
        self.calls = 0
        self.answered = threading.Event()
        self._release = threading.Event()

    def __call__(self, host, port):
        self.calls += 1
        self._release.wait(30)
        self.answered.set()
        return ["127.0.0.1"]

    def release(self) -> None:
        self._release.set()
        for thread in threading.enumerate():
            if thread.name == "kennel-resolve":
                thread.join()


@pytest.fixture
def hung_resolver():
    resolver = HungResolver()
    yield resolver
    resolver.release()


def test_a_resolver_that_never_answers_gives_504_within_the_deadline(
    hung_resolver, no_endpoint, certificate, context
):
    fetcher = fetcher_for(certificate, {TEST_HOST_NAME}, read_timeout_s=0.2, resolve=hung_resolver)
    proxy = Proxy.from_settings(settings(), no_endpoint.client, fetcher)

    reply = proxy.handle({"url": f"https://{TEST_HOST_NAME}/dog.jpg"}, context)

    assert reply["statusCode"] == 504
    body = json.loads(reply["body"])
    assert body["type"] == "url_fetch_timeout"
    assert "did not resolve in time" in body["error"]
    assert hung_resolver.calls == 1
    assert not hung_resolver.answered.is_set()


def test_lookups_left_hanging_are_bounded_and_freed_when_the_resolver_answers(hung_resolver, certificate):
    fetcher = fetcher_for(certificate, {TEST_HOST_NAME}, read_timeout_s=0.05, resolve=hung_resolver)

    for _ in range(safe_fetch.MAX_PENDING_LOOKUPS + 2):
        with pytest.raises(safe_fetch.FetchTimeout):
            fetcher.fetch(f"https://{TEST_HOST_NAME}/dog.jpg")
    assert hung_resolver.calls == safe_fetch.MAX_PENDING_LOOKUPS

    hung_resolver.release()
    # The resolver answers again, now at once; 127.0.0.1 is then refused by the public address rule.
    with pytest.raises(safe_fetch.UrlNotAllowed, match="non-public"):
        fetcher.fetch(f"https://{TEST_HOST_NAME}/dog.jpg")
    assert hung_resolver.calls == safe_fetch.MAX_PENDING_LOOKUPS + 1


def test_a_name_that_does_not_resolve_is_a_502(certificate):
    def resolve(host, port):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    fetcher = fetcher_for(certificate, {TEST_HOST_NAME}, resolve=resolve)

    with pytest.raises(safe_fetch.FetchError, match="could not be resolved") as raised:
        fetcher.fetch(f"https://{TEST_HOST_NAME}/dog.jpg")
    assert raised.value.status == 502


def test_url_bodies_through_the_handler(moto, images, certificate, context):
    fetcher = fetcher_for(
        certificate, {f"127.0.0.1:{images.port}"}, address_allowed=loopback_only, read_timeout_s=0.5
    )
    proxy = moto.proxy(fetcher=fetcher)
    predictions = {"predictions": [{"label": "dog", "probability": 0.9}]}
    moto.queue_results(predictions)

    ok = proxy.handle({"url": f"{images.url}/ascii.jpg", "top_k": 1}, context)
    refused = [
        proxy.handle({"url": f"{images.url}{path}"}, context) for path in ("/slow", "/big", "/away", "/page")
    ]

    assert ok["statusCode"] == 200
    assert json.loads(ok["body"]) == predictions
    assert [r["statusCode"] for r in refused] == [504, 413, 400, 415]


def test_the_proxys_fetcher_uses_the_public_address_rule(no_endpoint):
    configured = Settings.from_env(
        {"SAGEMAKER_ENDPOINT_NAME": ENDPOINT, "KENNEL_ALLOWED_URL_HOSTS": "127.0.0.1, Images.Example.com"}
    )
    proxy = Proxy.from_settings(configured, no_endpoint.client)

    assert configured.allowed_url_hosts == {"127.0.0.1", "images.example.com"}
    assert proxy.fetcher._address_allowed is safe_fetch.is_public_address
    with pytest.raises(safe_fetch.UrlNotAllowed, match="non-public"):
        proxy.fetcher.fetch("https://127.0.0.1/dog.jpg")


CHUNKED = b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n\r\n"
# Where a server can keep a fetch waiting one byte at a time: (sent at once, then dripped). Each drip
# takes 8 s or more at one byte per 0.4 s, and no single read waits longer than 0.4 s.
DRIPS = {
    "status line and headers": (
        b"",
        b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 4\r\n\r\nabcd",
    ),
    "chunk-size line": (CHUNKED + b"4\r\nabcd\r\n", b"00000000000000000004\r\nabcd\r\n0\r\n\r\n"),
    "body with a Content-Length": (
        b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 20\r\n\r\n",
        b"x" * 20,
    ),
    "chunked body": (CHUNKED + b"14\r\n", b"x" * 20 + b"\r\n0\r\n\r\n"),
    "trailer": (CHUNKED + b"4\r\nabcd\r\n0\r\n", b"X-Checksum: 0123456789\r\n\r\n"),
}


@pytest.mark.parametrize("part", DRIPS)
def test_a_server_that_drips_its_answer_is_cut_off_at_the_deadline(
    moto, dripping_server, certificate, context, part
):
    prompt, drip = DRIPS[part]
    server = dripping_server(prompt, drip, interval_s=0.4)
    fetcher = fetcher_for(
        certificate, {f"127.0.0.1:{server.port}"}, address_allowed=loopback_only, read_timeout_s=1.0
    )
    proxy = moto.proxy(fetcher=fetcher)

    started = time.monotonic()
    reply = proxy.handle({"url": f"{server.url}/dog.jpg"}, context)
    elapsed = time.monotonic() - started

    assert reply["statusCode"] == 504, reply["body"]
    assert json.loads(reply["body"])["type"] == "url_fetch_timeout"
    # The drip lasts 8 s or more; only a deadline on the whole fetch (1 s) ends it this early.
    assert elapsed < 3.0, f"the fetch went on for {elapsed:.1f} s"


def test_a_tls_handshake_that_crawls_ends_at_the_deadline(images, dripping_relay, certificate):
    """The real server's handshake, passed on one byte every 0.1 s (its certificate alone takes minutes);
    the connect timeout is longer than the whole fetch's, and the fetch still ends at its deadline."""
    relay_port = dripping_relay(images.port, 0.1)
    policy = FetchPolicy(
        allowed_hosts=frozenset({f"127.0.0.1:{relay_port}"}),
        max_bytes=1000,
        connect_timeout_s=30.0,
        read_timeout_s=1.0,
    )
    fetcher = UrlFetcher(policy, ssl_context=certificate.client_context(), address_allowed=loopback_only)

    started = time.monotonic()
    with pytest.raises(safe_fetch.FetchTimeout):
        fetcher.fetch(f"https://127.0.0.1:{relay_port}/dog.jpg")
    assert time.monotonic() - started < 3.0
    assert images.requests == []
