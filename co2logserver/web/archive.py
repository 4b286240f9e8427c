"""Blueprint ``archive``: ``/archive/`` lists the daily archive files and serves them.

Only names the archive writes (``readings-YYYY-MM-DD.csv.gz``/``.parquet`` and their
``.sha256``) are looked up, always inside ``CO2LOGSERVER_ARCHIVE_DIR``: no other
path can be reached. A file is served only after its SHA-256 matched the one
recorded beside it; a corrupt file is logged and answered 503, never sent.
"""

from __future__ import annotations

from flask import (
    Blueprint,
    Response,
    current_app,
    render_template,
    request,
    send_file,
    url_for,
)

from co2logserver import archive
from co2logserver.errors import ArchiveUnavailable, BadRequest, NotFound
from co2logserver.web.common import settings

bp = Blueprint("archive", __name__, url_prefix="/archive")


def directory():
    """The archive directory; :raise NotFound: when archives are off."""
    found = archive.archive_directory(settings())
    if found is None:
        raise NotFound("This server keeps no daily archives")
    return found


@bp.get("/")
def index():
    """The archive files, newest first: HTML, or JSON with ``?format=json``."""
    fmt = request.args.get("format", "html").lower()
    if fmt not in ("html", "json"):
        raise BadRequest("format must be html or json")
    files = archive.list_files(directory())
    if fmt == "json":
        return {
            "files": [
                {
                    "name": f.name,
                    "day": f.day,
                    "format": f.format,
                    "size": f.size,
                    "sha256": f.sha256,
                    "url": url_for("archive.serve", name=f.name),
                }
                for f in files
            ],
            "columns": list(archive.COLUMNS),
        }
    return render_template("archive.html", files=files, columns=archive.COLUMNS)


@bp.get("/<name>")
def serve(name: str) -> Response:
    """One archive file (its checksum verified first) or its ``.sha256``."""
    folder = directory()
    if name.endswith(archive.CHECKSUM_SUFFIX):
        data = name.removesuffix(archive.CHECKSUM_SUFFIX)
        known = archive.NAME.fullmatch(data)
        digest = archive.recorded_checksum(folder / data) if known else None
        if digest is None:
            raise NotFound(f"No archive file {name}")
        return Response(f"{digest}  {data}\n", mimetype="text/plain")
    try:
        file, size = archive.open_verified(folder, name)
    except archive.CorruptArchive:
        current_app.logger.error(
            "archive: %s does not match its checksum; not served (the next "
            "`archive` run writes it again)",
            name,
        )
        raise ArchiveUnavailable(
            f"The archive file {name} failed its checksum and is not served until "
            "it is written again"
        ) from None
    except OSError:  # no such archive file (or a name the archive never writes)
        raise NotFound(f"No archive file {name[:80]}") from None
    fmt = archive.NAME.fullmatch(name)[2]  # type: ignore[index]
    response = send_file(
        file,
        mimetype=archive.CONTENT_TYPES[fmt],
        as_attachment=True,
        download_name=name,
        conditional=False,
        etag=False,
    )
    response.content_length = size
    return response
