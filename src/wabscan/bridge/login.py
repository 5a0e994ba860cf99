"""``wabscan login``: pair the appliance with a WhatsApp account.

Two ways, both ending with a session in the bridge's session store
(``bridge.session_file``), which the running bridge picks up by itself
within ``whatsapp.PAIRING_POLL`` seconds:

- :func:`login` without a phone number shows a QR code in the terminal
  (rendered with segno); scan it in WhatsApp under Linked devices. The code
  changes every 20-60 s until one is scanned.
- with a phone number it prints an eight-character pairing code instead, to
  type in WhatsApp under Linked devices, "link with phone number instead".
  neonize can ask for the code only while a connected, unpaired websocket
  exists, that is, once the first QR event fired (FIELD-NOTES).

The phone number is used for the pairing request only: it is not logged or
stored by wabscan (whatsmeow keeps the account's JID in its session store).
"""

from __future__ import annotations

import re
import sys
import threading
from pathlib import Path
from typing import Any, Final, TextIO

import segno

from wabscan.bridge.whatsapp import (
    STOP_WAIT,
    import_neonize,
    is_paired,
    redact,
    session_file,
)
from wabscan.config import Config
from wabscan.errors import InputError, WabscanError

DEFAULT_TIMEOUT: Final = 180.0
_PHONE = re.compile(r"[0-9]{8,15}")


class LoginError(WabscanError):
    """Pairing did not complete; the message says why and what to try."""


def normalise_phone(phone: str) -> str:
    """The digits of an international number (``+49 170 1234567`` gives
    ``491701234567``), as WhatsApp's pairing expects them.

    Raises:
        InputError: not 8 to 15 digits once spaces, dashes, dots, brackets
            and a leading ``+`` are removed.
    """
    digits = re.sub(r"[\s\-.()]", "", phone.strip()).removeprefix("+")
    if not _PHONE.fullmatch(digits):
        raise InputError(
            "--phone",
            "expected the full international number, country code first "
            "(for example +49 170 1234567)",
        )
    return digits


def login(
    config: Config,
    phone: str | None = None,
    *,
    force: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    out: TextIO | None = None,
) -> Path:
    """Pair this appliance with a WhatsApp account.

    Args:
        config: the configuration (``bridge.session_file``, state directory).
        phone: the account's number for a pairing code; None for a QR code.
        force: replace an existing session (the bridge must be stopped, or
            it keeps using the old one until it restarts).
        timeout: seconds to wait for the phone to confirm.
        out: where the QR code and instructions go (default: stdout).

    Returns:
        The session store's path.

    Raises:
        InputError: the phone number is not a full international number.
        LoginError: a session exists (without ``force``), WhatsApp cannot be
            reached, pairing failed or timed out.
    """
    out = out or sys.stdout
    digits = normalise_phone(phone) if phone is not None else None
    path = session_file(config)
    if is_paired(path):
        if not force:
            raise LoginError(
                f"{path}: this appliance is already paired; to pair again, stop "
                "the bridge and run `wabscan login --force`"
            )
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)

    import_neonize()
    from neonize.client import NewClient
    from neonize.events import ConnectedEv, LoggedOutEv, PairStatusEv

    client: Any = NewClient(str(path))
    done = threading.Event()
    outcome: dict[str, str] = {}
    codes_shown = 0

    def finish(result: str) -> None:
        outcome.setdefault("result", result)
        done.set()

    def on_qr(_client: Any, code: bytes) -> None:
        nonlocal codes_shown
        codes_shown += 1
        if digits is None:
            out.write(
                "\nScan this code in WhatsApp: Settings > Linked devices > "
                "Link a device (it changes every 20-60 s):\n"
            )
            segno.make_qr(code.decode()).terminal(out=out, compact=True)
            out.flush()
        elif codes_shown == 1:
            threading.Thread(target=pair_phone, daemon=True).start()

    def pair_phone() -> None:
        assert digits is not None
        try:
            code = client.PairPhone(digits, True)
        except Exception as exc:
            finish(f"WhatsApp refused the pairing request: {redact(str(exc))[:200]}")
            return
        out.write(
            f"\nPairing code: {code}\nIn WhatsApp: Settings > Linked devices > "
            "Link a device > Link with phone number instead, then type the "
            "code.\n"
        )
        out.flush()

    def on_paired(_client: Any, event: Any) -> None:
        status = event.DESCRIPTOR.fields_by_name["Status"].enum_type
        name = status.values_by_number.get(int(event.Status))
        if name is not None and name.name == "SUCCESS":
            out.write("Paired. The bridge picks the session up by itself.\n")
            out.flush()
        else:
            finish(f"pairing failed: {event.Error or 'no reason given'}")

    client.event.qr(on_qr)
    client.event(PairStatusEv)(on_paired)
    client.event(ConnectedEv)(lambda _c, _e: finish("ok"))
    client.event(LoggedOutEv)(lambda _c, _e: finish("WhatsApp logged the session out"))

    errors: list[BaseException] = []

    def connect() -> None:
        try:
            client.connect()
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    worker = threading.Thread(target=connect, name="neonize-login", daemon=True)
    worker.start()
    finished = done.wait(timeout)

    # stop() can block ~8 s on a hanging dial (FIELD-NOTES).
    threading.Thread(target=client.stop, daemon=True).start()
    worker.join(STOP_WAIT)

    result = outcome.get("result")
    if result == "ok":
        return path
    if result:
        raise LoginError(result)
    if errors:
        raise LoginError(
            f"cannot reach WhatsApp: {redact(str(errors[0]))[:200]} (check the network "
            "and that the appliance may connect to web.whatsapp.com)"
        )
    if not finished:
        raise LoginError(f"no confirmation from the phone within {timeout:.0f} s")
    raise LoginError("the connection ended before pairing completed")
