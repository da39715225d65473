"""A real SMTP server on loopback for the browser tests: accepts every message and writes it
to a directory, as received (.eml) and decoded ({to, subject, text} .json), so the tests
read the links the control plane emails.

Usage: smtp_sink.py DIR  — prints {"port": N} on stdout once listening on 127.0.0.1:N.
"""

import asyncio
import email
import email.policy
import json
import pathlib
import sys

from aiosmtpd.smtp import SMTP


class Sink:
    def __init__(self, folder: pathlib.Path):
        self.folder = folder
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        name = self.folder / f"{self.count:04d}.eml"
        name.write_bytes(envelope.original_content)
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        body = message.get_body(preferencelist=("plain", "html"))
        decoded = {
            "to": envelope.rcpt_tos,
            "subject": str(message.get("subject", "")),
            "text": body.get_content() if body is not None else "",
        }
        # Written under a temporary name and renamed, so readers never see half a file.
        tmp = name.with_suffix(".tmp")
        tmp.write_text(json.dumps(decoded))
        tmp.rename(name.with_suffix(".json"))
        return "250 Message accepted for delivery"


async def main(folder: pathlib.Path):
    folder.mkdir(parents=True, exist_ok=True)
    handler = Sink(folder)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(handler), host="127.0.0.1", port=0)
    port = server.sockets[0].getsockname()[1]
    print(json.dumps({"port": port}), flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(pathlib.Path(sys.argv[1])))
