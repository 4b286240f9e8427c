"""Blueprint ``owners``: claim a sensor, see its status, set where it stands (§12).

Every page needs a signed-in owner; every form is CSRF-checked (see
:func:`co2logserver.web.accounts.protect_forms`). Rules live in
:mod:`co2logserver.accounts` and :mod:`co2logserver.owners`.
"""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from co2logserver import accounts, limits, owners
from co2logserver.errors import ApiError
from co2logserver.web.accounts import attempts_left, protect_forms, too_many
from co2logserver.web.common import settings, store

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
    """SUID + claim code: the sensor becomes the signed-in owner's."""
    if request.method == "GET":
        return render_template("claim.html", suid=request.args.get("suid", ""))
    suid = request.form.get("suid", "")[:64]
    wait = attempts_left("claim", limits.client_address(), f"user:{current_user.id}")
    if wait:
        return too_many("claim.html", wait, suid=suid)
    try:
        suid = accounts.claim(
            store(), current_user.id, suid, request.form.get("code", "")
        )
    except ApiError as error:
        return render_template("claim.html", error=error.message, suid=suid), 403
    flash("The sensor is yours. Now set where it stands.")
    return redirect(url_for("owners.sensor_settings", suid=suid))


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
    except ApiError as error:
        if error.status == 404:
            raise
        return settings_page(suid, error.message, error.status, request.form.to_dict())
    flash(message)
    return redirect(url_for("owners.sensor_settings", suid=suid.lower()))
