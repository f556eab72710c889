"""The dashboard's own files: the sign-in page and the static files shipped with the package."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}

SIGN_IN_STYLE = """
body{margin:0;min-height:100vh;display:grid;place-items:center;font:15px/1.45 system-ui,sans-serif;
background:#f4f5f7;color:#1d2330}
form{background:#fff;padding:28px 32px;border-radius:10px;box-shadow:0 2px 12px #0001;width:320px}
h1{margin:0 0 4px;font-size:20px}p{margin:0 0 18px;color:#5b6475}
label{display:block;font-weight:600;margin-bottom:6px}
input{box-sizing:border-box;width:100%;padding:9px 10px;font:inherit;border:1px solid #c5cad3;
border-radius:6px}
button{margin-top:14px;width:100%;padding:9px;font:inherit;font-weight:600;border:0;border-radius:6px;
background:#2856d8;color:#fff;cursor:pointer}
.error{color:#b3261e;background:#fdecea;padding:8px 10px;border-radius:6px;margin:0 0 14px}
@media (prefers-color-scheme:dark){body{background:#14171c;color:#e6e8ec}form{background:#1d2129}
p{color:#9aa3b2}input{background:#14171c;color:#e6e8ec;border-color:#3a404c}}
""".strip()
SIGN_IN_STYLE_HASH = (
    "sha256-" + base64.b64encode(hashlib.sha256(SIGN_IN_STYLE.encode()).digest()).decode()
)

# What the sign-in page may say above the form: fixed texts only, nothing from the request.
NOTICES = {
    "": "",
    "wrong": "That token is not right.",
    "limited": "Too many wrong tokens from this address; wait a minute and try again.",
    "expired": "Your session ended; sign in again.",
}

_SIGN_IN = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>trail · sign in</title>
<style>{style}</style>
</head>
<body>
<form method="post" action="/dashboard/sign-in">
<h1>trail</h1>
<p>Who is online now, and what they do.</p>
{notice}<label for="token">API token</label>
<input id="token" name="token" type="password" required autofocus maxlength="1024"
 autocomplete="current-password"
 placeholder="TRAIL_API_TOKEN">
<button type="submit">Sign in</button>
</form>
</body>
</html>
"""


def sign_in_page(notice: str = "") -> str:
    """The sign-in form, with one of the fixed NOTICES above it."""
    text = NOTICES[notice]
    block = f'<p class="error" role="alert">{text}</p>\n' if text else ""
    return _SIGN_IN.format(style=SIGN_IN_STYLE, notice=block)


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str


def static_root() -> Traversable:
    return files("trailcli.collector.dashboard") / "static"


def load_static() -> dict[str, StaticFile]:
    """Every file under `static/` by its path there (`js/main.js`), read once."""
    found: dict[str, StaticFile] = {}

    def walk(folder: Traversable, prefix: str) -> None:
        for entry in folder.iterdir():
            name = prefix + entry.name
            if entry.is_dir():
                walk(entry, name + "/")
                continue
            suffix = "." + entry.name.rsplit(".", 1)[-1] if "." in entry.name else ""
            if suffix not in CONTENT_TYPES:
                continue
            body = entry.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
            found[name] = StaticFile(body, CONTENT_TYPES[suffix], etag)

    walk(static_root(), "")
    return found
