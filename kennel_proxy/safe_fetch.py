"""Fetches an image from a client-supplied URL without letting the URL reach anything it should not.

Used by validation.py for `{"url": "https://..."}` bodies; part of the Lambda zip (standard library only).

    fetcher = UrlFetcher(FetchPolicy(allowed_hosts=frozenset({"images.example.com"}), max_bytes=6 << 20,
                                     connect_timeout_s=2.0, read_timeout_s=5.0))
    image = fetcher.fetch("https://images.example.com/dog.jpg")

The rules, each enforced on every hop of a redirect chain:
- https only, no credentials in the URL;
- the host (and port, 443 unless the allow-list names another) must be on the allow-list;
- every address the host resolves to must be public (`is_public_address`; README.md lists the ranges), and
  the connection goes to an address that was checked, so a second DNS answer cannot swap in another one;
  TLS still verifies the certificate against the host name;
- at most `max_bytes` of body, a connect timeout per connection and one deadline for the whole fetch:
  name resolution, connecting, the TLS handshake and every read of the answer, so a server that sends a
  byte at a time cannot stretch it.
"""

import http.client
import io
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 3
CHUNK_BYTES = 64 * 1024
# A lookup that outlives its deadline keeps its thread until the resolver answers; past this many such
# threads a fetch fails at once instead of starting another.
MAX_PENDING_LOOKUPS = 4
# Prefixes whose last 32 bits are the IPv4 address a packet is delivered to.
IPV4_IN_LAST_32_BITS = (
    ipaddress.IPv6Network("::ffff:0:0/96"),  # IPv4-mapped (RFC 4291)
    ipaddress.IPv6Network("::/96"),  # IPv4-compatible, deprecated (RFC 4291)
    ipaddress.IPv6Network("::ffff:0:0:0/96"),  # IPv4-translated (RFC 2765)
    ipaddress.IPv6Network("64:ff9b::/96"),  # NAT64 well-known prefix (RFC 6052)
)
# The guard's own tables, so that what it refuses does not change with the Python version (the ipaddress
# module of 3.11 calls 192.0.0.8, 192.88.99.0/24 and 3fff::/20 global). Every block of the IANA IPv4
# Special-Purpose Address Registry (https://www.iana.org/assignments/iana-ipv4-special-registry), and
# multicast. The registry marks a few blocks globally reachable (the anycast addresses in 192.0.0.0/24,
# AS112, AMT); they are refused too, since no image is served from them.
SPECIAL_IPV4 = tuple(
    ipaddress.IPv4Network(block)
    for block in (
        "0.0.0.0/8",  # "this network" (RFC 791)
        "10.0.0.0/8",  # private use (RFC 1918)
        "100.64.0.0/10",  # shared address space, carrier-grade NAT (RFC 6598)
        "127.0.0.0/8",  # loopback (RFC 1122)
        "169.254.0.0/16",  # link local (RFC 3927), where 169.254.169.254 is the metadata service
        "172.16.0.0/12",  # private use (RFC 1918)
        # IETF protocol assignments (RFC 6890): DS-Lite 192.0.0.0/29 (RFC 7335), the dummy address
        # 192.0.0.8 (RFC 7600), PCP and TURN anycast, NAT64 discovery 192.0.0.170/31 (RFC 7050).
        "192.0.0.0/24",
        "192.0.2.0/24",  # documentation, TEST-NET-1 (RFC 5737)
        "192.31.196.0/24",  # AS112-v4 (RFC 7535)
        "192.52.193.0/24",  # AMT (RFC 7450)
        "192.88.99.0/24",  # 6to4 relay anycast, deprecated (RFC 7526)
        "192.168.0.0/16",  # private use (RFC 1918)
        "192.175.48.0/24",  # direct delegation AS112 service (RFC 7534)
        "198.18.0.0/15",  # benchmarking (RFC 2544)
        "198.51.100.0/24",  # documentation, TEST-NET-2 (RFC 5737)
        "203.0.113.0/24",  # documentation, TEST-NET-3 (RFC 5737)
        "224.0.0.0/4",  # multicast (RFC 5771; the IPv4 multicast address space registry)
        "240.0.0.0/4",  # reserved (RFC 1112), with 255.255.255.255, the limited broadcast (RFC 919)
    )
)
# Every block of the IANA IPv6 Special-Purpose Address Registry
# (https://www.iana.org/assignments/iana-ipv6-special-registry) but the three that carry an IPv4 address
# (::ffff:0:0/96, 64:ff9b::/96, 2002::/16: judged by that address, `embedded_ipv4`), with site-local and
# multicast from the IPv6 address space registry. Refused whatever they carry.
SPECIAL_IPV6 = tuple(
    ipaddress.IPv6Network(block)
    for block in (
        "::/128",  # unspecified (RFC 4291)
        "::1/128",  # loopback (RFC 4291)
        # NAT64 local-use prefix (RFC 8215): where the IPv4 address sits depends on the network's own
        # prefix length, and the translator is the network's own.
        "64:ff9b:1::/48",
        "100::/64",  # discard-only (RFC 6666)
        "100:0:0:1::/64",  # dummy prefix
        # IETF protocol assignments (RFC 2928): Teredo 2001::/32 (RFC 4380), which goes through a relay
        # the network picks; benchmarking 2001:2::/48 (RFC 5180); ORCHID 2001:10::/28 and 2001:20::/28;
        # drone remote ID 2001:30::/28 (RFC 9374); AMT 2001:3::/32; AS112 2001:4:112::/48; anycast /128s.
        "2001::/23",
        "2001:db8::/32",  # documentation (RFC 3849)
        "2620:4f:8000::/48",  # direct delegation AS112 service (RFC 7534)
        "3fff::/20",  # documentation (RFC 9637)
        "5f00::/16",  # segment routing (SRv6) SIDs (RFC 9602)
        "fc00::/7",  # unique local (RFC 4193), where fd00:ec2::254 is the metadata service
        "fe80::/10",  # link-local unicast (RFC 4291)
        "fec0::/10",  # site-local, deprecated (RFC 3879)
        "ff00::/8",  # multicast (RFC 4291)
    )
)
# Where IANA assigns IPv6 unicast addresses (the IPv6 address space registry); everything else is
# reserved by the IETF and is not where an image host is.
GLOBAL_UNICAST_IPV6 = ipaddress.IPv6Network("2000::/3")


class FetchError(Exception):
    """A fetch that did not produce an image; `status` and `type` say how the proxy answers."""

    status = 502
    type = "url_fetch_failed"


class UrlNotAllowed(FetchError):
    status = 400
    type = "url_not_allowed"


class ImageTooLarge(FetchError):
    status = 413
    type = "image_too_large"


class FetchTimeout(FetchError):
    status = 504
    type = "url_fetch_timeout"


class NotAnImage(FetchError):
    status = 415
    type = "unsupported_media_type"


@dataclass(frozen=True)
class FetchPolicy:
    """Hosts are lower-case names or IP literals, `host` for port 443 or `host:port` for another port."""

    allowed_hosts: frozenset[str]
    max_bytes: int
    connect_timeout_s: float
    read_timeout_s: float


@dataclass(frozen=True)
class FetchedImage:
    body: bytes
    content_type: str


def is_public_address(address: IPAddress) -> bool:
    """True unless `address` is in one of the special-purpose blocks above, or is IPv6 outside global
    unicast. An IPv6 address that carries an IPv4 address (mapped, compatible, translated, 6to4, NAT64) is
    judged by that IPv4 address. Only the tables here decide, not the `ipaddress` module's own."""
    if isinstance(address, ipaddress.IPv6Address):
        if any(address in block for block in SPECIAL_IPV6):
            return False
        embedded = embedded_ipv4(address)
        if embedded is None:
            return address in GLOBAL_UNICAST_IPV6
        address = embedded
    return not any(address in block for block in SPECIAL_IPV4)


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address that decides where a packet to `address` ends up, if it carries one."""
    if address.sixtofour is not None:
        return address.sixtofour
    if any(address in network for network in IPV4_IN_LAST_32_BITS):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def resolve_host(host: str, port: int) -> list[str]:
    """Every address `host` resolves to for TCP, in the resolver's order, without duplicates."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class _DeadlineSocket:
    """What http.client uses of a socket (sendall, makefile, close), where every read and write may take
    only the time left before `deadline`. A timeout per read is not enough: a server that sends one byte
    every few tenths of a second never lets a read time out, and http.client reads the status line,
    headers, chunk-size lines and trailers a line at a time, each through as many reads as it takes."""

    def __init__(self, sock: socket.socket, deadline: float):
        self._sock = sock
        self._deadline = deadline

    def sendall(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            self._sock.settimeout(_remaining(self._deadline))
            view = view[self._sock.send(view) :]

    def makefile(self, mode: str) -> io.BufferedReader:
        # The socket's own unbuffered reader, so closing the connection leaves the socket open until the
        # response is closed too, as with a plain socket (socket.makefile counts its readers).
        return io.BufferedReader(
            _DeadlineReader(self._sock, self._sock.makefile("rb", buffering=0), self._deadline)
        )

    def close(self) -> None:
        self._sock.close()


class _DeadlineReader(io.RawIOBase):
    def __init__(self, sock: socket.socket, raw: io.RawIOBase, deadline: float):
        self._sock = sock
        self._raw = raw
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        self._sock.settimeout(_remaining(self._deadline))
        return self._raw.readinto(buffer)

    def close(self) -> None:
        self._raw.close()
        super().close()


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """An HTTPS connection to a host name that connects to one already-checked address. Connecting and the
    TLS handshake take at most `timeout` together; everything after them ends by `deadline`."""

    def __init__(
        self, host: str, port: int, address: str, context: ssl.SSLContext, timeout: float, deadline: float
    ):
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address
        self._tls = context
        self._deadline = deadline

    def connect(self) -> None:
        handshake_by = min(time.monotonic() + self.timeout, self._deadline)
        raw = socket.create_connection((self._address, self.port), self.timeout)
        try:
            # ssl gives the whole handshake one deadline: the socket's timeout when it starts.
            raw.settimeout(_remaining(handshake_by))
            self.sock = _DeadlineSocket(self._tls.wrap_socket(raw, server_hostname=self.host), self._deadline)
        except BaseException:
            raw.close()
            raise


class UrlFetcher:
    """Fetches images under a FetchPolicy.

    `address_allowed`, `resolve` and `ssl_context` exist so that tests can serve images from 127.0.0.1
    with their own certificate; the proxy builds its fetcher from the policy alone, so neither
    configuration nor a request can relax the address rule.
    """

    def __init__(
        self,
        policy: FetchPolicy,
        *,
        address_allowed: Callable[[IPAddress], bool] = is_public_address,
        resolve: Callable[[str, int], list[str]] = resolve_host,
        ssl_context: ssl.SSLContext | None = None,
    ):
        self.policy = policy
        self._address_allowed = address_allowed
        self._resolve = resolve
        self._lookup_slots = threading.BoundedSemaphore(MAX_PENDING_LOOKUPS)
        self._ssl_context = ssl_context or ssl.create_default_context()

    def fetch(self, url: str) -> FetchedImage:
        deadline = time.monotonic() + self.policy.read_timeout_s
        for _ in range(MAX_REDIRECTS + 1):
            host, port, target = self._check_url(url)
            addresses = self._checked_addresses(host, port, deadline)
            try:
                result = self._get(host, port, target, addresses, deadline)
            except TimeoutError as err:
                raise FetchTimeout("the image URL did not answer in time") from err
            except ssl.SSLError as err:
                raise FetchError("TLS with the image host failed") from err
            except (OSError, http.client.HTTPException) as err:
                raise FetchError("the image URL could not be fetched") from err
            if isinstance(result, FetchedImage):
                return result
            url = urljoin(url, result)
        raise FetchError(f"more than {MAX_REDIRECTS} redirects")

    def _check_url(self, url: str) -> tuple[str, int, str]:
        try:
            parts = urlsplit(url)
            port = parts.port or 443
        except ValueError as err:
            raise UrlNotAllowed("the URL is malformed") from err
        if parts.scheme.lower() != "https":
            raise UrlNotAllowed("only https URLs are fetched")
        if parts.username is not None or parts.password is not None:
            raise UrlNotAllowed("URLs with credentials are not fetched")
        host = (parts.hostname or "").rstrip(".")
        key = host if port == 443 else f"{host}:{port}"
        if not host or key not in self.policy.allowed_hosts:
            raise UrlNotAllowed(
                f"the host {key!r} is not on the allow-list: add it to lambda.allowed_url_hosts in the "
                "stack file (KENNEL_ALLOWED_URL_HOSTS when run locally)"
            )
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return host, port, target

    def _checked_addresses(self, host: str, port: int, deadline: float) -> list[str]:
        try:
            addresses = self._resolve_before(host, port, deadline)
        except TimeoutError as err:
            raise FetchTimeout(f"the host {host!r} did not resolve in time") from err
        except OSError as err:
            raise FetchError(f"the host {host!r} could not be resolved") from err
        if not addresses:
            raise FetchError(f"the host {host!r} has no addresses")
        for address in addresses:
            # A scope id (fe80::1%eth0) is not part of the address.
            if not self._address_allowed(ipaddress.ip_address(address.split("%", 1)[0])):
                raise UrlNotAllowed(f"the host {host!r} resolves to a non-public address")
        return addresses

    def _resolve_before(self, host: str, port: int, deadline: float) -> list[str]:
        """`resolve` on a daemon thread, waited for until the deadline; the socket module has no timeout for
        getaddrinfo, and a thread that is still waiting neither blocks the handler's return nor the exit."""
        timeout = _remaining(deadline)
        if not self._lookup_slots.acquire(blocking=False):
            raise TimeoutError(f"{MAX_PENDING_LOOKUPS} earlier lookups have not answered yet")
        answer: Future[list[str]] = Future()

        def lookup() -> None:
            # The slot is free before the answer is, so the next fetch never finds it taken by this one.
            try:
                addresses = self._resolve(host, port)
            except BaseException as err:
                self._lookup_slots.release()
                answer.set_exception(err)
            else:
                self._lookup_slots.release()
                answer.set_result(addresses)

        threading.Thread(target=lookup, name="kennel-resolve", daemon=True).start()
        return answer.result(timeout)

    def _get(
        self, host: str, port: int, target: str, addresses: list[str], deadline: float
    ) -> FetchedImage | str:
        """The image, or the Location of a redirect."""
        connection = self._connect(host, port, addresses, deadline)
        response = None
        try:
            connection.request("GET", target, headers={"Accept": "image/*", "User-Agent": "kennel-proxy"})
            response = connection.getresponse()
            if response.status in REDIRECT_STATUSES:
                location = response.getheader("Location")
                if not location:
                    raise FetchError(f"a redirect (HTTP {response.status}) without a Location")
                return location
            if response.status != 200:
                raise FetchError(f"the image URL answered HTTP {response.status}")
            content_type = (response.getheader("Content-Type") or "").split(";")[0].strip().lower()
            if (
                content_type
                and not content_type.startswith("image/")
                and content_type
                not in {
                    "application/octet-stream",
                    "application/x-image",
                }
            ):
                raise NotAnImage(f"the image URL returned {content_type!r}, not an image")
            body = self._read_capped(response)
            image_type = content_type if content_type.startswith("image/") else "application/x-image"
            return FetchedImage(body=body, content_type=image_type)
        finally:
            # The response holds the socket open past the connection's close (an answer that says it will
            # close makes http.client let go of the socket early); closing both closes it.
            if response is not None:
                response.close()
            connection.close()

    def _connect(self, host: str, port: int, addresses: list[str], deadline: float) -> _PinnedHTTPSConnection:
        last: OSError | None = None
        for address in addresses:
            timeout = min(self.policy.connect_timeout_s, _remaining(deadline))
            connection = _PinnedHTTPSConnection(host, port, address, self._ssl_context, timeout, deadline)
            try:
                connection.connect()
            except ssl.SSLError:
                connection.close()
                raise
            except OSError as err:
                connection.close()
                last = err
                continue
            return connection
        assert last is not None
        raise last

    def _read_capped(self, response: http.client.HTTPResponse) -> bytes:
        cap = self.policy.max_bytes
        if response.length is not None and response.length > cap:
            raise ImageTooLarge(f"the image is larger than {cap} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = response.read1(CHUNK_BYTES)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > cap:
                raise ImageTooLarge(f"the image is larger than {cap} bytes")
            chunks.append(chunk)


def _remaining(deadline: float) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("fetch deadline passed")
    return remaining
