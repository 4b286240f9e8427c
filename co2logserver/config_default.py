"""Default configuration of co2logserver.

Every key is documented here and in ``docs/configuration.rst`` (a test keeps both in
step). Override a key in the Python file named by ``CO2LOGSERVER_CONFIG`` (or ``-c``),
with an environment variable of the same name (value parsed as JSON, else as a Python
literal, else kept as text), or with a command-line option. Key names and meanings of
co2logserver 0.1.2 are kept, so its configuration files keep working.
"""

import logging
import re

from co2logserver.utils import utc_datetime_from_unix_timestamp

# --------------------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------------------

# Name shown on the pages and used for OpenSenseMap box names.
CO2LOGSERVER_NAME = "co2logserver"

# Database: a file path (SQLite, the embedded default) or an SQLAlchemy URL such as
# ``sqlite:///data/co2.sqlite`` or ``postgresql+psycopg://user:pw@host/db``. The file
# name is the one 0.1.2 used, so an existing database is picked up as it is.
CO2LOGSERVER_DB = "co2.sqlite"

# Log level of the application (a ``logging`` level number or name).
CO2LOGSERVER_LOGLEVEL = logging.WARNING

# Log level of the ``sensemapi`` library used for OpenSenseMap forwarding.
CO2LOGSERVER_SENSEMAPI_LOGLEVEL = logging.WARNING

# SQLite ``synchronous`` pragma. ``FULL`` makes every acknowledged upload survive a
# power loss (one fsync per commit); ``NORMAL`` survives a crash of the server process
# but may lose the last commits on power loss, in exchange for faster small writes.
CO2LOGSERVER_SQLITE_SYNCHRONOUS = "FULL"

# Group commit: the ingest requests that a worker's threads (gunicorn ``gthread``)
# have ready while a commit runs share the next transaction and its one commit (one
# fsync), each in its own savepoint, each answered only after that commit. Off:
# every request commits alone (the same answers, one fsync each).
CO2LOGSERVER_GROUP_COMMIT = True

# Seconds an SQLite write may wait in all for the write lock (behind the other
# workers and behind any other process, a backup or the ``sqlite3`` shell) before the
# request answers 503 with ``Retry-After``.
CO2LOGSERVER_SQLITE_BUSY_TIMEOUT = 30

# Seconds a PostgreSQL call may wait: connecting, a pool checkout, each statement
# (the server's ``statement_timeout``) and, because a hung host or a network partition
# leaves the connection open and silent, each wait for an answer (a clock in the
# client). A write transaction as a whole gets the same budget; past it the request
# answers 503 with ``Retry-After``. Five seconds is far above a healthy write's time
# and well below the minute sensors usually wait between uploads.
CO2LOGSERVER_DB_TIMEOUT = 5

# Seconds ``/health`` may wait for the database in all before it answers 503
# ``unavailable``: monitors and load balancers poll it with short timeouts of their own.
CO2LOGSERVER_HEALTH_TIMEOUT = 2

# Seconds a sensor is told to wait (``Retry-After``) when storage is unavailable.
CO2LOGSERVER_RETRY_AFTER = 10

# --------------------------------------------------------------------------------------
# Legacy upload (``POST /upload``) and authentication
# --------------------------------------------------------------------------------------

# Salts (pre-shared keys) that ``Content-<ALG>-Salted`` checksums are checked against.
# With no salts the checksum columns stay empty.
CO2LOGSERVER_CHECKSUM_SALTS: list[str] = []

# Whether ``POST /upload`` requires a matching salted checksum (else 403).
CO2LOGSERVER_UPLOAD_REQUIRES_AUTH = False

# Whether ``GET /download`` requires a salted checksum of the request's full path.
CO2LOGSERVER_DOWNLOAD_REQUIRES_AUTH = False

# Whether ``GET /uploadhelp`` shows copy-paste upload examples.
CO2LOGSERVER_UPLOAD_HELP = True


def CO2LOGSERVER_AUTH_CHECKER(x):
    """Decide whether checksums authenticate a request.

    Called with a dict mapping each algorithm given in a header to the matching salt
    (or ``None`` when no salt matched). By default at least one checksum must be given
    and all given ones must match.
    """
    return bool(len(x) and all(x.values()))


# Name of the legacy data table (0.1.2 always used ``data``).
CO2LOGSERVER_DATA_TABLE_NAME = "data"

# Automatic column: comma-joined names of algorithms whose checksum matched.
CO2LOGSERVER_MATCHED_CHECKSUMS_COL = "matched_checksums"

# Automatic column: comma-joined names of algorithms whose checksum did not match.
CO2LOGSERVER_FAILED_CHECKSUMS_COL = "failed_checksums"

# Automatic column: server time (UTC) of the upload.
CO2LOGSERVER_UPLOAD_TIME_COL = "time_upload_utc"

# Columns converted by ``CO2LOGSERVER_TIME_CONVERTER`` (UNIX seconds -> UTC datetime).
CO2LOGSERVER_TIME_COLS = ["time"]


def CO2LOGSERVER_TIME_CONVERTER(val, col):
    """Convert a value of a column in ``CO2LOGSERVER_TIME_COLS`` to a datetime.

    The default reads UNIX seconds as UTC. A value it cannot convert is a 400.
    """
    return utc_datetime_from_unix_timestamp(val)


# Most rows one ``GET /download`` returns (``number`` is capped at this).
CO2LOGSERVER_MAX_LIMIT_OF_ROWS = 1000


def CO2LOGSERVER_ACCEPT_NEW_COLUMN(col):
    """Decide whether a column the table does not have yet is created.

    A refused column's values are dropped from the upload (as in 0.1.2).
    """
    return True


def CO2LOGSERVER_ACCEPT_NEW_READING_TYPE(name):
    """Decide whether a reading name no quantity of the registry maps is stored.

    SPEC §9: an InfluxDB field, LoRaWAN payload key or airrohr value_type with no
    mapping is stored as a quantity of its own (its lower-cased name, unit unknown)
    unless this returns False; refused readings are counted in ``/metrics``
    (``co2logserver_reading_types_refused``) and the rest of the request is stored.
    """
    return True


# Whether rows with no data columns (only automatic ones) are stored.
CO2LOGSERVER_ALLOW_EMPTY_ROWS = False

# Most rows one legacy upload may carry (more is a 413).
CO2LOGSERVER_MAX_ROWS = 10000

# Most new columns one upload may add to the data table (more is a 400), so a broken
# or hostile sensor cannot widen the table quickly.
CO2LOGSERVER_MAX_NEW_COLUMNS = 20

# Most columns the data table may have in all (more is a 400).
CO2LOGSERVER_MAX_COLUMNS = 200

# --------------------------------------------------------------------------------------
# Limits and abuse protection
# --------------------------------------------------------------------------------------

# Largest request body in bytes, also the cap on a gzip body's decompressed size.
CO2LOGSERVER_MAX_CONTENT_LENGTH = 1024 * 1024

# Where requests wait while the database is away (SPEC §10): a directory on local
# disk, one per database. Empty: next to an SQLite file (``<file>.spool``), or
# ``co2logserver-spool/<hash of the URL>`` in the working directory for PostgreSQL.
# An unwritable directory stops the start.
CO2LOGSERVER_SPOOL_DIR = ""

# At most this many bytes of spooled requests; when full, posts get 503 +
# Retry-After again. 0 turns the spool off (every outage is a 503, as before 1.0).
CO2LOGSERVER_SPOOL_MAX_BYTES = 256 * 1024 * 1024


# Whether ingest routes are rate limited (turn off only for benchmarks).
CO2LOGSERVER_RATELIMIT_ENABLED = True

# Rate limit per sensor (SUID) on the sensor API: a sensor reporting every second
# stays well below it.
CO2LOGSERVER_RATELIMIT_SENSOR = "120 per minute"

# Rate limit per client address on all ingest routes (a gateway serving many sensors
# sits behind one address).
CO2LOGSERVER_RATELIMIT_ADDRESS = "1200 per minute"

# Where rate-limit counters live: ``memory://`` (one process) or ``redis://host:port``
# (shared by all workers and hosts).
CO2LOGSERVER_RATELIMIT_STORAGE = "memory://"

# Number of reverse proxies in front of the server whose ``X-Forwarded-For`` is
# trusted for the client address. 0 trusts none.
CO2LOGSERVER_TRUSTED_PROXIES = 0

# --------------------------------------------------------------------------------------
# OpenSmog sensor API (``/v1``, ``/rogue/v1``)
# --------------------------------------------------------------------------------------

# Most observations in one readings request (more is a 413).
CO2LOGSERVER_MAX_OBSERVATIONS = 1000

# Seconds a reading's timestamp may lie in the future (sensor clocks drift).
CO2LOGSERVER_MAX_CLOCK_SKEW = 86400

# Who may send a second ``PUT /v1/sensors/<SUID>`` for a sensor registered secure.
# SUIDs are public, so the default ``"signed"`` asks for the PUT to be signed with the
# current SECRET (``Authorization: OpenSmogHash <sha256(body + SECRET)>``: the device
# rotating its own SECRET); an unsigned or wrongly signed one is a 409 that says how to
# recover (``reset-sensor``). ``True`` lets anyone re-register any sensor and lock the
# real device out -- unsafe, kept only for closed networks; ``False`` refuses every
# second PUT.
CO2LOGSERVER_ALLOW_REREGISTRATION = "signed"

# Seconds an OpenSmogHash2 ``ts`` may differ from the server's clock (``ts=0``, a
# device without a clock, is exempt; its ``seq`` alone stops replays).
CO2LOGSERVER_REPLAY_WINDOW = 300

# Decimal places of a degree that public responses show of a sensor location
# (2 is about 1 km).
CO2LOGSERVER_PUBLIC_LOCATION_DECIMALS = 2

# Bearer tokens that may see exact locations (``Authorization: Bearer <token>``).
CO2LOGSERVER_ADMIN_TOKENS: list[str] = []

# Shared secrets of the LoRaWAN webhooks ``/lorawan/v1/ttn`` and
# ``/lorawan/v1/chirpstack``: each network server sends one in its
# ``X-Webhook-Secret`` header. Empty (the default) turns the webhooks off (404),
# because without a secret anyone could post "verified" readings for any DevEUI.
# List several to change one without a gap, e.g. ``["new-secret", "old-secret"]``.
CO2LOGSERVER_LORAWAN_WEBHOOK_SECRETS: list[str] = []

# Largest size in bytes of a registration's JSON metadata.
CO2LOGSERVER_MAX_METADATA_BYTES = 4096

# Default page size of ``GET /v1/sensors/<SUID>/readings`` (JSON).
CO2LOGSERVER_READINGS_PAGE_SIZE = 1000

# Largest page size a client may ask for with ``limit`` (readings and the sensor
# list).
CO2LOGSERVER_READINGS_MAX_PAGE_SIZE = 100000

# Default page size of ``GET /v1/sensors``: large enough that a usual installation
# gets every sensor in one answer, as before paging existed; the answer has a
# ``next`` cursor only when there are more.
CO2LOGSERVER_SENSORS_PAGE_SIZE = 1000

# Seconds without a reading after which the dashboard marks a sensor as silent. An
# hour suits sensors that report every few minutes; raise it for slow senders.
CO2LOGSERVER_SILENT_AFTER = 3600

# --------------------------------------------------------------------------------------
# Retention (``docs/deployment.rst``, Retention and disk use)
# --------------------------------------------------------------------------------------

# Days raw readings are kept: a background sweeper (one per installation, by a lease
# in the database) deletes readings, and rows of the legacy data table by their
# upload time, older than this, in small batches that never hold ingest up for more
# than a few milliseconds. ``None`` (the default) keeps everything for ever, as
# before: deleting data must be the operator's choice. Hourly rollups are kept.
CO2LOGSERVER_RETENTION_DAYS = None

# Days hourly rollups are kept; ``None`` (the default) keeps them for ever, since a
# year of them costs about a hundredth of the raw readings. It must be at least
# ``CO2LOGSERVER_RETENTION_DAYS``: rollups are what is left of deleted readings.
CO2LOGSERVER_ROLLUP_RETENTION_DAYS = None

# Whether the server runs the retention sweeper (a thread in the worker holding the
# lease; it sweeps every ten minutes). Turn off to sweep only with
# ``python3 -m co2logserver retention-sweep``, e.g. from cron at a quiet hour.
CO2LOGSERVER_RETENTION_THREAD = True

# --------------------------------------------------------------------------------------
# OpenSenseMap forwarding
# --------------------------------------------------------------------------------------

# Whether stored data is forwarded to the OpenSenseMap.
CO2LOGSERVER_OSEM_UPLOAD = False

# OpenSenseMap API address; ``None`` takes the environment variable ``SENSEMAP_API``,
# else the public API.
CO2LOGSERVER_OSEM_API = None

# Login name; ``None`` takes the environment variable ``SENSEMAP_USERNAME``.
CO2LOGSERVER_OSEM_USERNAME = None

# Login email; ``None`` takes the environment variable ``SENSEMAP_EMAIL``.
CO2LOGSERVER_OSEM_EMAIL = None

# Login password; ``None`` takes the environment variable ``SENSEMAP_PASSWORD``.
CO2LOGSERVER_OSEM_PASSWORD = None

# Whether the OpenSenseMap sign-in is cached on disk between restarts.
CO2LOGSERVER_OSEM_AUTH_CACHE = False

# Whether OpenSenseMap requests are cached on disk.
CO2LOGSERVER_OSEM_REQUEST_CACHE = False

# Whether the OpenSenseMap password is kept in the auth cache.
CO2LOGSERVER_OSEM_CACHE_PASSWORD = False


def CO2LOGSERVER_OSEM_COL_REDIRECT(col):
    """Decide whether a column is forwarded to the OpenSenseMap (default: all)."""
    return True


def CO2LOGSERVER_OSEM_BOX_REDIRECT(box):
    """Decide whether a senseBox (box column value) is forwarded (default: all)."""
    return True


def CO2LOGSERVER_OSEM_VALUE_FILTER(box, col, val):
    """Return the value sent to the OpenSenseMap (default: rounded to 3 decimals)."""
    return round(val, 3)


# Column naming the senseBox a row belongs to.
CO2LOGSERVER_OSEM_BOX_COL = "box"

# Box name used for rows without a box column.
CO2LOGSERVER_OSEM_BOX_COL_DEFAULT = "generic"

# Column holding the latitude of the senseBox.
CO2LOGSERVER_OSEM_LAT_COL = "lat"

# Column holding the longitude of the senseBox.
CO2LOGSERVER_OSEM_LON_COL = "lon"

# Column holding the height of the senseBox.
CO2LOGSERVER_OSEM_HEIGHT_COL = "height"


def CO2LOGSERVER_DEFAULT_LAT(box):
    """Latitude of a box whose data has none (``None``: unknown, the data waits)."""
    return None


def CO2LOGSERVER_DEFAULT_LON(box):
    """Longitude of a box whose data has none (``None``: unknown, the data waits)."""
    return None


# Column holding the measurement time (the first of ``CO2LOGSERVER_TIME_COLS``).
CO2LOGSERVER_OSEM_TIME_COL = "time"

# Minimum seconds between two measurements forwarded for one sensor.
CO2LOGSERVER_OSEM_MIN_SECONDS_BETWEEN_UPLOADS = 0


def CO2LOGSERVER_OSEM_EXPOSURE_DETERMINER(box):
    """Return the senseBox exposure: indoor, outdoor or mobile (default mobile)."""
    return next((x for x in ("indoor", "outdoor", "mobile") if box in x), "mobile")


# ``weblink`` of every created senseBox.
CO2LOGSERVER_OSEM_DEFAULT_WEBLINK = "https://pypi.org/project/co2logserver/"

# Description of every created senseBox (``{servername}`` is filled in).
CO2LOGSERVER_OSEM_DEFAULT_DESCRIPTION = (
    "Created automatically by the co2logserver instance '{servername}'."
)

# Columns matching this expression are forwarded; it needs the named groups ``type``,
# ``quantity`` and ``unit`` (default naming: ``SENSORTYPE_QUANTITY_UNIT``).
CO2LOGSERVER_OSEM_COL_REGEX = re.compile(
    r"^(?P<type>[^_]+)_(?P<quantity>[^_]+)_(?P<unit>.*)$"
)

# Box name from keyword arguments ``servername`` and ``box``.
CO2LOGSERVER_OSEM_BOX_NAME_GENERATOR = "{servername} senseBox {box}".format

# Sensor title from the groups of ``CO2LOGSERVER_OSEM_COL_REGEX`` and ``column``.
CO2LOGSERVER_OSEM_SENSOR_TITLE_GENERATOR = "{quantity}".format


def CO2LOGSERVER_OSEM_UNIT_COVERTER(x):
    """Return the OpenSenseMap unit for a column's unit part (key name as in 0.1.2)."""
    return {"c": "°C", "percent": "%", "perc": "%"}.get(x.lower(), x)


# Icons the OpenSenseMap offers.
CO2LOGSERVER_OSEM_ICONS = [
    "osem-moisture",
    "osem-temperature-celsius",
    "osem-temperature-fahrenheit",
    "osem-thermometer",
    "osem-windspeed",
    "osem-sprinkles",
    "osem-brightness",
    "osem-barometer",
    "osem-humidity",
    "osem-not-available",
    "osem-gauge",
    "osem-umbrella",
    "osem-clock",
    "osem-shock",
    "osem-fire",
    "osem-volume-up",
    "osem-cloud",
    "osem-dashboard",
    "osem-particulate-matter",
    "osem-signal",
    "osem-microphone",
    "osem-wifi",
    "osem-battery",
    "osem-radioactive",
]


def CO2LOGSERVER_OSEM_ICON_DETERMINER(d):
    """Return the icon of a sensor: the first whose name contains its quantity."""
    return next(
        (icon for icon in CO2LOGSERVER_OSEM_ICONS if d["quantity"] in icon),
        "osem-not-available",
    )


# Largest plausible jump of a box position in degrees; larger jumps are ignored as
# GPS errors.
CO2LOGSERVER_OSEM_MAX_POSITION_CHANGE = float("inf")

# Upper bound in seconds of the forwarder's exponential backoff while the
# OpenSenseMap is unreachable or rate limits.
CO2LOGSERVER_OSEM_MAX_BACKOFF = 30

# Seconds the forwarder waits for the OpenSenseMap to connect and, again, to answer
# a request; a hanging OpenSenseMap then counts as unreachable and is retried with
# the backoff. Uploads never wait for it either way.
CO2LOGSERVER_OSEM_TIMEOUT = 30

# Seconds a forwarder's lease lasts without renewal. The holder renews it every
# third of this while it lives; if it dies, another process takes over after at
# most this long. Hosts sharing one database need synchronised clocks.
CO2LOGSERVER_OSEM_LEASE_SECONDS = 30

# Whether the server process runs the forwarder thread (one across all workers, by a
# lease in the database). Turn off when ``python3 -m co2logserver forward`` runs.
CO2LOGSERVER_OSEM_FORWARDER_THREAD = True

# Most outbox items one forwarding round sends.
CO2LOGSERVER_OSEM_BATCH_SIZE = 500

# --------------------------------------------------------------------------------------
# MQTT ingestion (``python3 -m co2logserver mqtt``)
# --------------------------------------------------------------------------------------

# Broker address: ``mqtt://user:password@host:1883`` or ``mqtts://host:8883``.
CO2LOGSERVER_MQTT_URL = "mqtt://127.0.0.1:1883"

# Topic prefix; readings arrive under ``<prefix>/v1/sensors/<SUID>/readings``.
CO2LOGSERVER_MQTT_PREFIX = "opensmog"

# MQTT client id; a fixed id keeps the broker session (queued messages) across
# restarts.
CO2LOGSERVER_MQTT_CLIENT_ID = "co2logserver"

# Shared-subscription group (``$share/<group>/...``) so several subscribers split the
# load; empty for a plain subscription.
CO2LOGSERVER_MQTT_SHARED_GROUP = ""

# CA certificates (a PEM file) that the broker's certificate is checked against for
# ``mqtts://``; ``None`` uses the system's trusted CAs.
CO2LOGSERVER_MQTT_TLS_CA_CERTS = None

# Client certificate (PEM) for brokers that authenticate clients by TLS; ``None`` for
# none.
CO2LOGSERVER_MQTT_TLS_CERTFILE = None

# Private key (PEM) of ``CO2LOGSERVER_MQTT_TLS_CERTFILE``; ``None`` when the key is in
# the certificate file.
CO2LOGSERVER_MQTT_TLS_KEYFILE = None

# Seconds between keep-alive pings; the broker drops the connection after 1.5 times
# this without traffic, and then redelivers what was not acknowledged.
CO2LOGSERVER_MQTT_KEEPALIVE = 60

# Seconds the broker keeps the subscriber's session (its subscriptions and the
# messages queued for it) while the subscriber is away. A week covers a long
# outage; the broker's own limits (``max_queued_messages``) apply too.
CO2LOGSERVER_MQTT_SESSION_EXPIRY = 7 * 24 * 3600

# Upper bound in seconds of the subscriber's backoff while the database is
# unavailable (the message waits unacknowledged) or the broker is unreachable.
CO2LOGSERVER_MQTT_MAX_BACKOFF = 30

# --------------------------------------------------------------------------------------
# Owners: accounts, claims, locations and the map (SPEC §12, ``docs/owners.rst``)
# --------------------------------------------------------------------------------------

# Key that signs the owners' session cookies and form (CSRF) tokens. ``None`` (the
# default) generates a random key on first use and keeps it in the database, so every
# worker and host shares it and sessions survive restarts; set one only to rotate it.
CO2LOGSERVER_SECRET_KEY = None

# Who may create an owner account on ``/signup``: ``"open"`` (anyone; a sensor is only
# theirs with its claim code, so an account alone gains nothing), ``"invitation"`` (a
# code from the ``invite`` command is needed) or ``"off"`` (the operator creates
# accounts with ``create-user``).
CO2LOGSERVER_SIGNUP = "open"

# Sign-in (and sign-up) attempts allowed per client address and, separately, per
# account name, against password guessing. On even when
# ``CO2LOGSERVER_RATELIMIT_ENABLED`` is off.
CO2LOGSERVER_RATELIMIT_SIGNIN = "10 per minute;100 per day"

# Claim attempts allowed per account and per client address: a claim code has 40
# bits, so this keeps guessing hopeless.
CO2LOGSERVER_RATELIMIT_CLAIM = "10 per minute;50 per day"

# Base URL of a Nominatim-compatible geocoder (``…/search?q=…&format=jsonv2``) that
# turns an owner's street address into a position, e.g.
# ``"https://nominatim.openstreetmap.org"`` (mind its usage policy). ``None`` (the
# default) turns address search off: owners give lat/lon or click the map.
CO2LOGSERVER_GEOCODER_URL = None

# Seconds to wait for the geocoder before the page says it did not answer.
CO2LOGSERVER_GEOCODER_TIMEOUT = 5

# Seconds a geocoder answer is reused for the same address (the cache is in the
# database), sparing the geocoder and its rate limits.
CO2LOGSERVER_GEOCODER_CACHE_SECONDS = 30 * 86400

# Tile URL template of the maps (``{z}``, ``{x}``, ``{y}``), e.g.
# ``"https://tile.openstreetmap.org/{z}/{x}/{y}.png"``. Empty (the default) draws no
# tiles: the visitor's browser contacts no third party, and the map still works as a
# picker (click for lat/lon) with the sensors as markers on a grid.
CO2LOGSERVER_MAP_TILE_URL = ""

# Attribution shown under the map tiles (required by most tile servers, e.g.
# ``"© OpenStreetMap contributors"``).
CO2LOGSERVER_MAP_TILE_ATTRIBUTION = ""

# Quantity that colours the markers of ``/map`` (its latest value per sensor).
CO2LOGSERVER_MAP_QUANTITY = "PM2_5"

# Which request headers carry a salted checksum: a header whose whole name matches
# is one, and the named group ``algorithm`` (required) names its hashlib algorithm.
# The default is 0.1.2's ``Content-<ALGORITHM>-Salted``; a text value (e.g. from the
# environment) is compiled case-insensitively, as header names are.
CO2LOGSERVER_SALTED_CHECKSUM_HEADER_REGEX = re.compile(
    r"Content-(?P<algorithm>\w+)-Salted", re.IGNORECASE
)

# --------------------------------------------------------------------------------------
# Daily archives (``python3 -m co2logserver archive``, ``/archive/``)
# --------------------------------------------------------------------------------------

# Directory of the daily archive files: one per complete UTC day of every reading
# with the public (rounded) location only, written once by the ``archive`` command
# and served, checksum verified, under ``/archive/``. Empty: no archives (the command
# refuses, ``/archive/`` answers 404). Created if missing; a directory that cannot
# be written stops the start and the command.
CO2LOGSERVER_ARCHIVE_DIR = ""
