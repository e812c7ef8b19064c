"""A posted multipart/form-data body (a file upload from a console form) read into its text
fields and its files.

The body reaches us whole: API Gateway passes it base64-encoded because app.py lists
multipart/form-data among the binary media types (else it would hand an XLSX's bytes over as
UTF-8 text and break them), and Chalice decodes it. It is capped at MAX_UPLOAD_BYTES: a Lambda
invocation carries at most 6 MB, and base64 makes 4 MB about 5.4 MB. The standard library's
MIME parser reads it (bytes in, bytes out: nothing is decoded as text but the field values).
"""

from __future__ import annotations

from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

from chalicelib.core.errors import ApiError

MAX_UPLOAD_BYTES = 4 * 1024 * 1024
MAX_FIELD_CHARS = 2000  # a text field beside the file (a token, a choice): a few dozen
MAX_PARTS = 20


@dataclass(frozen=True)
class Upload:
    filename: str  # as the browser sent it, without any folder
    data: bytes


@dataclass(frozen=True)
class Posted:
    fields: dict[str, str]
    files: dict[str, Upload]


def is_multipart(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() == "multipart/form-data"


def too_large() -> ApiError:
    return ApiError(413, "payload_too_large",
                    f"a file is at most {MAX_UPLOAD_BYTES // (1024 * 1024)} MB",
                    limit_bytes=MAX_UPLOAD_BYTES)


def parse(body: bytes, content_type: str) -> Posted:
    """The form's fields (the last value of each) and files; 413 over the cap, 400 for a body
    that is not multipart/form-data with a boundary."""
    if len(body) > MAX_UPLOAD_BYTES:
        raise too_large()
    if "boundary=" not in content_type.lower() or "\r" in content_type or "\n" in content_type:
        raise ApiError(400, "malformed_form", "multipart/form-data needs its boundary")
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1", "replace")
    message = BytesParser(policy=policy.HTTP).parsebytes(head + body)
    if not isinstance(message, EmailMessage) or not message.is_multipart() or message.defects:
        raise ApiError(400, "malformed_form", "the form is not readable multipart/form-data")
    fields: dict[str, str] = {}
    files: dict[str, Upload] = {}
    parts = list(message.iter_parts())
    if len(parts) > MAX_PARTS:
        raise ApiError(400, "malformed_form", f"a form has at most {MAX_PARTS} fields")
    for part in parts:
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str) or not name:
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        filename = part.get_filename()
        if filename is not None:
            files[name] = Upload(filename=_base_name(filename), data=data)
            continue
        try:
            value = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(400, "malformed_form", f"{name} is not UTF-8") from None
        if len(value) > MAX_FIELD_CHARS:
            raise ApiError(400, "invalid_form", f"{name} is at most {MAX_FIELD_CHARS} characters")
        fields[name] = value
    return Posted(fields=fields, files=files)


def _base_name(filename: str) -> str:
    """The file's own name (old browsers send the whole path), at most 200 characters."""
    return filename.replace("\\", "/").rsplit("/", 1)[-1].strip()[:200]
