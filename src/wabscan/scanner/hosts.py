"""What wabscan knows about kinds of hosts, independent of any feed.

These are facts about how the web is organised (which services host many
unrelated tenants, which shorten links, which hand out free subdomains), not
verdicts on particular sites. Feeds of the same categories
(``free-hosting``, ``dynamic-dns``) extend them at run time.
"""

from __future__ import annotations

# Services whose tenants each get a subdomain: the tenant is the host, so
# x.github.io and y.github.io are judged separately, never as github.io.
SUBDOMAIN_TENANCY = frozenset(
    {
        "000webhostapp.com",
        "appspot.com",
        "azurewebsites.net",
        "blogspot.com",
        "firebaseapp.com",
        "github.io",
        "gitlab.io",
        "glitch.me",
        "godaddysites.com",
        "herokuapp.com",
        "mystrikingly.com",
        "netlify.app",
        "ngrok-free.app",
        "ngrok.io",
        "pages.dev",
        "repl.co",
        "sharepoint.com",
        "square.site",
        "vercel.app",
        "web.app",
        "webflow.io",
        "weebly.com",
        "wixsite.com",
        "wordpress.com",
        "workers.dev",
        "r2.dev",
        "onrender.com",
        "fly.dev",
        "surge.sh",
        "carrd.co",
        "tilda.ws",
        "jimdosite.com",
        "yolasite.com",
        "myshopify.com",
        "amazonaws.com",
        "googleusercontent.com",
        "cloudfront.net",
        "windows.net",
        "translate.goog",
    }
)

# Hosts whose tenants live in the path: only a URL-level entry can judge them.
PATH_TENANCY = frozenset(
    {
        "docs.google.com",
        "sites.google.com",
        "drive.google.com",
        "forms.gle",
        "storage.googleapis.com",
        "firebasestorage.googleapis.com",
        "script.google.com",
        "bit.ly",
        "bitly.com",
        "tinyurl.com",
        "cutt.ly",
        "linktr.ee",
        "t.co",
        "is.gd",
        "ow.ly",
        "rebrand.ly",
        "rb.gy",
        "shorturl.at",
        "tiny.cc",
        "s.id",
        "t.ly",
        "v.gd",
        "1drv.ms",
        "onedrive.live.com",
        "forms.office.com",
        "dropbox.com",
        "raw.githubusercontent.com",
        "gist.github.com",
        "ipfs.io",
        "dweb.link",
        "telegra.ph",
        "t.me",
        "notion.site",
        "canva.com",
        "qrco.de",
    }
)

SHORTENERS = frozenset(
    {
        "bit.ly",
        "bitly.com",
        "tinyurl.com",
        "cutt.ly",
        "t.co",
        "is.gd",
        "ow.ly",
        "rebrand.ly",
        "rb.gy",
        "shorturl.at",
        "tiny.cc",
        "s.id",
        "t.ly",
        "v.gd",
        "goo.gl",
        "buff.ly",
        "shorte.st",
        "adf.ly",
        "bl.ink",
        "lnkd.in",
        "qrco.de",
        "tr.ee",
        "urlz.fr",
        "clck.ru",
        "u.to",
        "short.gy",
        "gg.gg",
        "x.gd",
    }
)

FREE_HOSTING = frozenset(
    SUBDOMAIN_TENANCY
    - {
        "sharepoint.com",
        "myshopify.com",
        "cloudfront.net",
        "windows.net",
        "translate.goog",
        "googleusercontent.com",
    }
    | {"sites.google.com", "telegra.ph", "notion.site"}
)

DYNAMIC_DNS = frozenset(
    {
        "duckdns.org",
        "no-ip.com",
        "no-ip.org",
        "ddns.net",
        "hopto.org",
        "zapto.org",
        "sytes.net",
        "dyndns.org",
        "dynu.net",
        "freedns.afraid.org",
        "servebeer.com",
        "serveftp.com",
        "myftp.org",
        "redirectme.net",
        "3utilities.com",
        "bounceme.net",
        "ddnsking.com",
        "gotdns.ch",
        "mooo.com",
        "chickenkiller.com",
        "dns.army",
        "linkpc.net",
        "publicvm.com",
        "kozow.com",
        "loseyourip.com",
        "ooguy.com",
    }
)

# Top-level domains abused far beyond their share of honest sites (registrars
# give them away or nearly; see the abuse rankings of Spamhaus and Interisle).
SUSPICIOUS_TLDS = frozenset(
    {
        "zip",
        "mov",
        "xyz",
        "top",
        "click",
        "link",
        "gq",
        "ml",
        "cf",
        "ga",
        "tk",
        "work",
        "buzz",
        "rest",
        "cam",
        "icu",
        "cyou",
        "sbs",
        "cfd",
        "monster",
        "quest",
        "loan",
        "win",
        "review",
        "country",
        "kim",
        "bid",
        "men",
        "date",
        "racing",
        "download",
        "accountant",
        "stream",
        "gdn",
        "lol",
        "mom",
        "bond",
        "tokyo",
        "uno",
        "shop",
        "online",
        "site",
        "live",
        "vip",
        "fun",
        "pw",
    }
)

# File types that install or run code when opened: what "WhatsApp Gold" and
# fake-invoice lures deliver.
EXECUTABLE_EXTENSIONS = frozenset(
    {
        "exe",
        "scr",
        "msi",
        "msix",
        "appx",
        "bat",
        "cmd",
        "com",
        "pif",
        "cpl",
        "apk",
        "xapk",
        "apks",
        "jar",
        "vbs",
        "vbe",
        "ps1",
        "hta",
        "lnk",
        "iso",
        "img",
        "dmg",
        "pkg",
        "ipa",
        "wsf",
        "reg",
    }
)

DEFAULT_PORTS = frozenset({80, 443, 8080, 8443})


def tenancy_base(host: str) -> tuple[str, str] | None:
    """The multi-tenant service a host belongs to, and how it divides tenants.

    Returns:
        ``(base, "subdomain")`` for x.github.io (base github.io),
        ``(base, "path")`` for docs.google.com, or None.
    """
    bare = host.removeprefix("www.")
    if bare in PATH_TENANCY:
        return bare, "path"
    for base in _parents(host):
        if base in SUBDOMAIN_TENANCY:
            return base, "subdomain" if base != host else "path"
    return None


def front_door(host: str, registered_domain: str | None) -> bool:
    """Whether ``host`` is a site's own front door (``example.com``,
    ``www.example.com``, ``m.example.com``) rather than another subdomain,
    which on a popular platform is often a user's own."""
    if registered_domain is None:
        return False
    return host == registered_domain or host in {
        f"{prefix}.{registered_domain}" for prefix in ("www", "m", "mobile")
    }


def in_set(host: str, names: frozenset[str]) -> str | None:
    """The entry of ``names`` that is ``host`` or a parent domain of it."""
    for parent in _parents(host):
        if parent in names:
            return parent
    return None


def _parents(host: str) -> list[str]:
    labels = host.split(".")
    return [".".join(labels[i:]) for i in range(len(labels) - 1)]
