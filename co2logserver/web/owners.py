"""Blueprint ``owners``: claim a sensor, see its status, set where it stands (§12).

Every page needs a signed-in owner; every form is CSRF-checked (see
:func:`co2logserver.web.accounts.protect_forms`). Rules live in
:mod:`co2logserver.accounts` and :mod:`co2logserver.owners`.
"""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from co2logserver import accounts, limits, owners
from co2logserver.web.accounts import attempts_left, protect_forms, too_many
from co2logserver.web.common import settings, store
from co2logserver.web.errors import ANSWERED, status_of

bp = Blueprint("owners", __name__)
protect_forms(bp)


@bp.after_request
def private(response):
    """Owners' pages hold exact locations: never cached by anyone else."""
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.route("/claim", methods=["GET", "POST"])
@login_required
def claim():
    """SUID + claim code: the sensor becomes the signed-in owner's.

    Where it stands may come along (lat/lon, or an address when a geocoder is
    set): a bad position refuses the form before claiming; a failed address lookup
    leaves the claim done and says so.
    """
    if request.method == "GET":
        return claim_page(suid=request.args.get("suid", ""))
    form = {k: v[:300] for k, v in request.form.items() if k != "code"}
    wait = attempts_left("claim", limits.client_address(), f"user:{current_user.id}")
    if wait:
        return too_many("claim.html", wait, form=form, geocoder=geocoder())
    try:
        has_position = owners.parse_optional_position(request.form)
        suid = accounts.claim(
            store(), current_user.id, form.get("suid", ""), request.form.get("code", "")
        )
    except ANSWERED as error:
        return claim_page(error.message, form), status_of(error)
    flash("The sensor is yours.")
    flash(place_after_claim(suid, has_position))
    return redirect(url_for("owners.sensor_settings", suid=suid))


def claim_page(error: str | None = None, form=None, suid: str = ""):
    """The claim form, with the fields just posted."""
    form = form or {"suid": suid}
    return render_template("claim.html", error=error, form=form, geocoder=geocoder())


def geocoder() -> bool:
    """Whether address search is on."""
    return bool(settings()["CO2LOGSERVER_GEOCODER_URL"])


def place_after_claim(suid: str, has_position: bool) -> str:
    """Keep the position or address posted with a claim; what to tell the owner."""
    address = request.form.get("address", "").strip()
    try:
        if has_position:
            owners.set_position(store(), current_user, suid, request.form, settings())
            return "Location saved."
        if address:
            place = owners.set_address(store(), current_user, suid, address, settings())
            return f"Found {place.label or 'the address'}; location saved."
    except ANSWERED as error:
        return f"The location was not saved: {error.message}"
    return "Now set where it stands."


@bp.get("/my/sensors")
@login_required
def my_sensors():
    """Every sensor of the owner: last reading, silent, rejected requests."""
    views = owners.owned(store(), settings(), current_user)
    return render_template("my_sensors.html", sensors=views)


@bp.get("/my/sensors/<suid>")
@login_required
def sensor_settings(suid: str):
    """One owned sensor: exact location, name, visibility, map picker."""
    return settings_page(suid)


def settings_page(suid: str, error: str | None = None, status: int = 200, form=None):
    """The sensor's settings page, with an error of the form just posted."""
    sensor = owners.owned_sensor(store(), settings(), current_user, suid)
    page = render_template(
        "owner_sensor.html",
        sensor=sensor,
        error=error,
        form=form or {},
        geocoder=bool(settings()["CO2LOGSERVER_GEOCODER_URL"]),
        tiles=settings()["CO2LOGSERVER_MAP_TILE_URL"],
        attribution=settings()["CO2LOGSERVER_MAP_TILE_ATTRIBUTION"],
    )
    return page, status


#: What each form of the settings page does, by its ``action`` field.
ACTIONS = {
    "position": (owners.set_position, "Location saved."),
    "profile": (owners.set_profile, "Name and visibility saved."),
}


@bp.post("/my/sensors/<suid>")
@login_required
def update_sensor(suid: str):
    """Save one form of the settings page; on an error show it, store nothing."""
    action = request.form.get("action", "")
    try:
        if action == "address":
            place = owners.set_address(
                store(), current_user, suid, request.form.get("address", ""), settings()
            )
            message = f"Found {place.label or 'the address'}; location saved."
        elif action in ACTIONS:
            change, message = ACTIONS[action]
            change(store(), current_user, suid, request.form, settings())
        else:
            return settings_page(suid, "Unknown form.", 400)
    except ANSWERED as error:
        if status_of(error) == 404:
            raise
        return settings_page(
            suid, error.message, status_of(error), request.form.to_dict()
        )
    flash(message)
    return redirect(url_for("owners.sensor_settings", suid=suid.lower()))
