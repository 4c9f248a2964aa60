"""Sends sign-in links: by SMTP when configured, otherwise to the server log."""

from __future__ import annotations

import asyncio
import logging
import smtplib
from email.message import EmailMessage
from urllib.parse import urlencode

from taskmachine.settings import Settings

log = logging.getLogger("taskmachine.mailer")


def magic_link_url(settings: Settings, secret: str) -> str:
    return f"{settings.public_url}/auth/magic?{urlencode({'token': secret})}"


class Mailer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # The last links "sent", kept only when there is no SMTP (useful on a laptop).
        self.outbox: list[tuple[str, str]] = []

    async def send_magic_link(self, email: str, secret: str) -> None:
        url = magic_link_url(self.settings, secret)
        if not self.settings.smtp_host:
            log.info("sign-in link for %s: %s", email, url, extra={"email": email})
            self.outbox.append((email, url))
            del self.outbox[:-100]
            return
        message = EmailMessage()
        message["From"] = self.settings.smtp_from
        message["To"] = email
        message["Subject"] = "Your Task Machine sign-in link"
        message.set_content(
            f"Open this link to sign in to Task Machine:\n\n{url}\n\n"
            "It works once and expires soon. If you did not ask for it, ignore this email."
        )
        # smtplib blocks; keep it off the event loop.
        await asyncio.to_thread(self._send, message)

    def _send(self, message: EmailMessage) -> None:
        s = self.settings
        with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=20) as smtp:
            if s.smtp_starttls:
                smtp.starttls()
            if s.smtp_username:
                smtp.login(s.smtp_username, s.smtp_password)
            smtp.send_message(message)
