"""Reading mail back for the tests: the raw mails the local SES holds for an address, their
attachments, and a report's CSV figures and tables as reports/render.py lays them out (read
here independently of the renderer)."""

from __future__ import annotations

import csv
import email
import email.policy
import io
from email.message import Message

import boto3
import requests


def mails_to(address: str) -> list[Message]:
    """The raw mails sent to `address`, oldest first. The endpoint answers with its whole
    state (every mail the session's tests sent), slow late in a run on a loaded machine."""
    endpoint = boto3.client("ses").meta.endpoint_url
    data = requests.get(f"{endpoint}/moto-api/data.json", timeout=120).json()
    return [email.message_from_string(m["raw_data"], policy=email.policy.default)
            for m in data.get("ses", {}).get("RawMessage", [])
            if address in m.get("destinations", [])]


def attachments(mail: Message) -> dict[str, bytes]:
    """Each attached file's name and bytes."""
    found: dict[str, bytes] = {}
    for part in mail.walk():
        name = part.get_filename()
        if name:
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            found[name] = payload
    return found


def csv_blocks(text: str) -> list[list[list[str]]]:
    """The CSV's blocks (split at empty lines): the figures first, then one per table."""
    blocks: list[list[list[str]]] = [[]]
    for row in csv.reader(io.StringIO(text.removeprefix("\ufeff"))):
        if not row:
            blocks.append([])
        else:
            blocks[-1].append(row)
    return blocks


def csv_figures(text: str) -> dict[tuple[str, str], str]:
    """(section key, figure key) -> value as written."""
    header, *rows = csv_blocks(text)[0]
    assert header == ["section", "table", "key", "label", "value", "unit"]
    return {(row[0], row[2]): row[4] for row in rows}


def csv_tables(text: str) -> dict[tuple[str, str], list[list[str]]]:
    """(section key, table key) -> its columns, then its rows."""
    return {(block[0][0], block[0][1]): [row[2:] for row in block]
            for block in csv_blocks(text)[1:]}
