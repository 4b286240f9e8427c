"""Table definitions of the sensor API, the outbox and the forwarder lease.

The legacy ``data`` table is not defined here: its columns grow with the uploads and
a 0.1.2 database brings its own, so :mod:`co2logserver.store.columns` reflects it.
"""

from sqlalchemy import BigInteger as _BigInteger
from sqlalchemy import (
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
)

metadata = MetaData()

# SQLite only makes an INTEGER PRIMARY KEY an alias of the rowid, so keys are
# BIGINT on PostgreSQL and INTEGER on SQLite.
BigInteger = _BigInteger().with_variant(Integer(), "sqlite")

#: One row per SUID: its current registration and public metadata.
sensors = Table(
    "sensors",
    metadata,
    Column("suid", String(36), primary_key=True),
    Column("registration_id", BigInteger, nullable=False),
    Column("secure", Boolean, nullable=False),
    Column("manufacturer", Text),
    Column("model", Text),
    Column("latitude", Float),
    Column("longitude", Float),
    Column("elevation", Float),
    Column("extra", Text),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("reading_count", BigInteger, nullable=False, default=0),
    Column("first_ts", BigInteger),
    Column("last_ts", BigInteger),
    # The protocol's own device name (SPEC §9: "airrohr:esp8266-1:SDS", ...),
    # NULL for OpenSmog sensors. Added to older databases by the store's migration.
    Column("alias", Text),
    Index("ix_sensors_alias", "alias"),
)

#: Quantities a database learned from the protocols (SPEC §9): a field name with no
#: mapping in the registry is stored under a code of its own (1000 and up; the
#: built-in codes of co2logserver.readings are never written here).
quantities = Table(
    "quantities",
    metadata,
    Column("code", Integer, primary_key=True, autoincrement=False),
    Column("name", String(64), nullable=False, unique=True),
    Column("unit", Text, nullable=False, default=""),
)

#: Every registration of a SUID; a SECRET belongs to exactly one registration.
registrations = Table(
    "registrations",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("suid", String(36), nullable=False, index=True),
    Column("secure", Boolean, nullable=False),
    Column("secret", String(64)),
    Column("created_at", BigInteger, nullable=False),
)

#: OpenSmogHash2's window: the ``seq`` values a registration has signed with, the
#: highest one and those at most 64 below it (older rows are deleted in batches, see
#: replay.forgotten_below). Kept in the
#: database, written in the transaction of the readings, so every worker and host
#: shares one truth that survives restarts.
signed_seqs = Table(
    "signed_seqs",
    metadata,
    Column("registration_id", BigInteger, primary_key=True, autoincrement=False),
    Column("seq", _BigInteger, primary_key=True, autoincrement=False),
    Column("hash", String(64), nullable=False),
)

#: One value of one type at one second under one registration. The primary key is
#: the safe-retry rule (a resent reading stores nothing) and the index for
#: per-sensor time ranges; WITHOUT ROWID keeps a reading to about 25 bytes on SQLite.
readings = Table(
    "readings",
    metadata,
    Column(
        "registration_id",
        BigInteger,
        ForeignKey("registrations.id"),
        primary_key=True,
        autoincrement=False,
    ),
    Column("ts", BigInteger, primary_key=True, autoincrement=False),
    Column("type", SmallInteger, primary_key=True, autoincrement=False),
    Column("value", Float, nullable=False),
    sqlite_with_rowid=False,
)

#: Stored data waiting for the OpenSenseMap, written in the ingest transaction.
outbox = Table(
    "outbox",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),
    Column("box", Text, nullable=False),
    Column("payload", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("parked_at", BigInteger),
    Column("parked_reason", Text),
    Column("waiting_reason", Text),
    Index("ix_outbox_pending", "parked_at", "id"),
)

#: Who may run the forwarder: one holder across all workers and hosts.
leases = Table(
    "leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(128), nullable=False),
    Column("expires_at", Float, nullable=False),
)

#: Forwarder status shown on ``/``, ``/health`` and ``/metrics``.
forwarder_status = Table(
    "forwarder_status",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("last_success_at", Float),
    Column("last_error_at", Float),
    Column("last_error", Text),
)

#: Spool records already applied (SPEC §10), marked in the transaction that applied
#: each one; the applier deletes a segment's marks after deleting the segment.
spool_applied = Table(
    "spool_applied",
    metadata,
    Column("id", String(128), primary_key=True),
)


# -------------------------------------------------------------------- owners (§12)
# New tables only: ``create_all`` adds them to existing databases.

#: Owner accounts of the web pages. ``username`` is stored lower-cased.
users = Table(
    "users",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("username", String(254), nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("is_admin", Boolean, nullable=False, default=False),
    Column("created_at", BigInteger, nullable=False),
)

#: Who owns a sensor: the primary key is the one-owner rule (a claim race has one
#: winner).
sensor_owners = Table(
    "sensor_owners",
    metadata,
    Column("suid", String(36), primary_key=True),
    Column("user_id", BigInteger, ForeignKey("users.id"), nullable=False, index=True),
    Column("claimed_at", BigInteger, nullable=False),
)

#: Operator-issued claim codes (for rogue sensors and lost devices), hashed.
claim_codes = Table(
    "claim_codes",
    metadata,
    Column("suid", String(36), primary_key=True),
    Column("code_hash", String(64), nullable=False),
    Column("issued_at", BigInteger, nullable=False),
)

#: Invitation codes for ``CO2LOGSERVER_SIGNUP = "invitation"``: ``<id>-<token>``,
#: the token kept hashed (looked up by id, compared in constant time), used once.
invitations = Table(
    "invitations",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("code_hash", String(64), nullable=False),
    Column("issued_at", BigInteger, nullable=False),
    Column("used_by", BigInteger),
)

#: What the owner set for a sensor: its name, the private address and position,
#: and whether its rounded location is public at all. Kept apart from the owner,
#: so a transfer keeps it.
sensor_profiles = Table(
    "sensor_profiles",
    metadata,
    Column("suid", String(36), primary_key=True),
    Column("name", Text),
    Column("address", Text),
    Column("location_public", Boolean, nullable=False, default=True),
    # The position the owner set: it wins over one a device's later PUT sends.
    Column("latitude", Float),
    Column("longitude", Float),
    Column("elevation", Float),
    Column("updated_at", BigInteger, nullable=False),
)

#: The last rejected requests of each sensor (a few rows per SUID, pruned on
#: insert), so an owner debugging a sensor sees what it was told.
rejected_requests = Table(
    "rejected_requests",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("suid", String(36), nullable=False, index=True),
    Column("at", BigInteger, nullable=False),
    Column("status", SmallInteger, nullable=False),
    Column("protocol", String(64), nullable=False),
    Column("message", Text, nullable=False),
    Column("excerpt", Text),
)

#: Answers of the geocoder, by normalised query, so one address is asked once.
geocode_cache = Table(
    "geocode_cache",
    metadata,
    Column("query", String(512), primary_key=True),
    Column("latitude", Float),
    Column("longitude", Float),
    Column("label", Text),
    Column("fetched_at", BigInteger, nullable=False),
)

#: Installation-wide values the server generates once, such as the session key.
installation = Table(
    "installation",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)


# ------------------------------------------------------------ rollups (issue 18)
# New tables only: ``create_all`` adds them to existing databases, and
# co2logserver.store.rollups.ensure marks whether they are complete.

#: Per registration, quantity and hour (its first second, UNIX time): how many
#: readings, their min, max and sum (the mean of any hour-multiple bucket is
#: sum / count exactly as the raw readings give it). Written in the transaction
#: of the readings (co2logserver.store.rollups.add_new_readings).
rollups_hourly = Table(
    "rollups_hourly",
    metadata,
    Column("registration_id", BigInteger, primary_key=True, autoincrement=False),
    Column("type", SmallInteger, primary_key=True, autoincrement=False),
    Column("hour", _BigInteger, primary_key=True, autoincrement=False),
    Column("count", _BigInteger, nullable=False),
    Column("min", Float, nullable=False),
    Column("max", Float, nullable=False),
    Column("sum", Float, nullable=False),
    sqlite_with_rowid=False,
)

#: Whether the rollups hold every stored reading (``built``), and where the
#: ``build-rollups`` command resumes (the registration and hour it reached).
rollups_state = Table(
    "rollups_state",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("built", Boolean, nullable=False, default=False),
    Column("next_registration", _BigInteger),
    Column("next_hour", _BigInteger),
    Column("updated_at", BigInteger, nullable=False),
)


# ------------------------------------------------------- lists and counts (#18)
# New tables only: ``create_all`` adds them to existing databases, and
# store.migrate.fill_list_tables fills them once from the rows already there.

#: Every contiguous run of ``:``-separated parts of a sensor's lower-cased alias
#: (``airrohr``, ``esp8266-1``, ``sds``, ``airrohr:esp8266-1``, ``esp8266-1:sds``,
#: ``airrohr:esp8266-1:sds``), so ``?alias=`` is one exact lookup of this key
#: instead of a ``LIKE '%:…'`` over every sensor. Kept by sensors.describe_device.
alias_keys = Table(
    "alias_keys",
    metadata,
    Column("key", Text, primary_key=True),
    Column("suid", String(36), primary_key=True),
)

#: Rows of the legacy data table in all and the newest upload time, kept by
#: DataTable.insert in the upload's transaction. ``name`` is ``data/<shard>``: on
#: PostgreSQL concurrent uploads update one of 8 rows, not all the same one.
upload_totals = Table(
    "upload_totals",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("rows", _BigInteger, nullable=False),
    # UNIX seconds (with fractions) of the newest upload.
    Column("latest_upload", Float),
)

#: Legacy rows uploaded per minute (``minute`` is UNIX seconds // 60) and shard, for
#: the dashboard's "last hour" and "last day"; minutes older than two days are pruned.
upload_minutes = Table(
    "upload_minutes",
    metadata,
    Column("minute", _BigInteger, primary_key=True, autoincrement=False),
    Column("shard", SmallInteger, primary_key=True, autoincrement=False),
    Column("rows", _BigInteger, nullable=False),
)
