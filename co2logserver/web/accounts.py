"""Blueprint ``accounts``: sign-up, sign-in and sign-out of owners (SPEC §12).

Sessions are Flask's signed cookies (Flask-Login keeps the user id in them), forms
carry Flask-WTF CSRF tokens, passwords are checked by :mod:`co2logserver.accounts`.
Only the owners' pages open sessions and check CSRF tokens: the sensor API, the
legacy upload and the public pages neither read nor set a cookie, and never touch
the database for the session key (so they keep working while it is away).
"""

from __future__ import annotations

from flask import (
    Blueprint,
    Flask,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.sessions import SecureCookieSessionInterface
from flask_login import LoginManager, current_user, login_user, logout_user
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException

from co2logserver import accounts, limits
from co2logserver.errors import ApiError, ConfigError
from co2logserver.readings import QUANTITIES
from co2logserver.store.errors import StorageUnavailable
from co2logserver.web.common import settings, store
from co2logserver.web.errors import ANSWERED, headers_of, status_of

bp = Blueprint("accounts", __name__)
csrf = CSRFProtect()
login_manager = LoginManager()
login_manager.login_view = "accounts.signin"
login_manager.login_message = "Sign in to see this page."

#: Blueprints whose pages use the session (and so the session key).
SESSION_BLUEPRINTS = frozenset({"accounts", "owners"})
LIMITS = "co2logserver.attempts"
SEGMENTS = "co2logserver.session_segments"
UNAVAILABLE = "co2logserver.session_unavailable"


class OwnerSessions(SecureCookieSessionInterface):
    """Signed-cookie sessions for the owners' pages only, Secure over HTTPS.

    The key is loaded (or generated) on the first request that needs it; any other
    request gets the null session and no cookie.
    """

    def open_session(self, app: Flask, request):
        """The session of an owners' page; ``None`` (null session) elsewhere."""
        # Sessions open before routing: a first path segment that no owners' page
        # has ends it cheaply (the sensor API's hot path), the router decides the rest.
        if request.path.split("/", 2)[1] not in session_segments(app):
            return None
        if blueprint_of(app, request) not in SESSION_BLUEPRINTS:
            return None
        if not app.secret_key:
            try:
                app.secret_key = accounts.session_key(store())
            except ANSWERED as error:
                # The database is away: check_csrf answers 503 (an error raised
                # here would escape the error handlers).
                request.environ[UNAVAILABLE] = error
                return None
        return super().open_session(app, request)

    def get_cookie_secure(self, app: Flask) -> bool:
        """Secure when the request came over HTTPS (behind trusted proxies too)."""
        return request.is_secure or bool(app.config["SESSION_COOKIE_SECURE"])


def session_segments(app: Flask) -> frozenset[str]:
    """First path segments of the owners' pages (``signin``, ``my``…), once per app."""
    segments = app.extensions.get(SEGMENTS)
    if segments is None:
        segments = frozenset(
            rule.rule.split("/", 2)[1]
            for rule in app.url_map.iter_rules()
            if rule.endpoint.rpartition(".")[0] in SESSION_BLUEPRINTS
        )
        app.extensions[SEGMENTS] = segments
    return segments


def blueprint_of(app: Flask, request) -> str | None:
    """The blueprint the request's URL routes to (sessions open before routing)."""
    try:
        endpoint, _ = app.url_map.bind_to_environ(request.environ).match()
    except HTTPException:
        return None
    return endpoint.rpartition(".")[0] if "." in endpoint else None


def init_app(app: Flask) -> None:
    """Sessions, Flask-Login and CSRF for the owners' pages; check their settings.

    :raise ConfigError: for an unknown sign-up mode or a limit that does not parse.
    """
    accounts.check_signup_mode(app.config)
    if app.config["CO2LOGSERVER_SECRET_KEY"]:
        app.secret_key = str(app.config["CO2LOGSERVER_SECRET_KEY"])
    app.session_interface = OwnerSessions()
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_NAME="co2logserver_session",
        # Only the owners' blueprints are checked (see check_csrf): the sensor API
        # and /upload are machine clients with their own authentication.
        WTF_CSRF_CHECK_DEFAULT=False,
    )
    csrf.init_app(app)
    login_manager.init_app(app)
    app.extensions[LIMITS] = {
        "signin": limits.AttemptLimit(
            app.config, "CO2LOGSERVER_RATELIMIT_SIGNIN", "signin"
        ),
        "claim": limits.AttemptLimit(
            app.config, "CO2LOGSERVER_RATELIMIT_CLAIM", "claim"
        ),
    }
    if app.config["CO2LOGSERVER_MAP_QUANTITY"] not in QUANTITIES:
        raise ConfigError(
            "CO2LOGSERVER_MAP_QUANTITY must be a reading type such as PM2_5, "
            f"not {app.config['CO2LOGSERVER_MAP_QUANTITY']!r}"
        )


@login_manager.user_loader
def load_user(session_id: str):
    """The signed-in account, or ``None`` once disabled or its password changed."""
    return accounts.load_user(store(), session_id)


def attempts_left(kind: str, *identifiers: str) -> int:
    """Count an attempt; 0 when allowed, else the seconds to wait."""
    return current_app.extensions[LIMITS][kind].hit(*identifiers)


def too_many(template: str, wait: int, **context):
    """The form again with 429, ``Retry-After`` and a message that says when."""
    message = f"Too many attempts; try again in {wait} s."
    page = render_template(template, error=message, **context)
    return page, 429, {"Retry-After": str(wait)}


def check_csrf() -> None:
    """Refuse a form posted without its CSRF token (400, before the view runs).

    :raise StorageUnavailable: when the session key could not be loaded.
    """
    if UNAVAILABLE in request.environ:
        raise request.environ[UNAVAILABLE]
    if request.method == "POST":
        csrf.protect()


def csrf_refused(error: CSRFError):
    """The CSRF refusal as a page: the form is stale or was not ours."""
    message = f"The form was refused ({error.description}) Reload the page and retry."
    return render_template("owner_error.html", error=message), 400


def error_page(error: ApiError | StorageUnavailable):
    """An error of an owners' page (404, 503…) as a page, not JSON."""
    page = render_template("owner_error.html", error=error.message)
    return page, status_of(error), headers_of(error)


def protect_forms(blueprint: Blueprint) -> None:
    """Check CSRF tokens on every POST of ``blueprint``; its errors are pages."""
    blueprint.before_request(check_csrf)
    blueprint.register_error_handler(CSRFError, csrf_refused)
    blueprint.register_error_handler(ApiError, error_page)
    blueprint.register_error_handler(StorageUnavailable, error_page)


protect_forms(bp)


@bp.route("/signup", methods=["GET", "POST"])
def signup():
    """Create an owner account as ``CO2LOGSERVER_SIGNUP`` allows, and sign in."""
    mode = accounts.check_signup_mode(settings())
    if request.method == "GET":
        return render_template("signup.html", mode=mode)
    if mode == "off":
        return render_template("signup.html", mode=mode), 403
    username = request.form.get("username", "")[:254]
    wait = attempts_left("signin", limits.client_address())
    if wait:
        return too_many("signup.html", wait, mode=mode, username=username)
    try:
        user_id = accounts.sign_up(
            store(),
            settings(),
            username,
            request.form.get("password", ""),
            request.form.get("invitation", ""),
        )
    except ANSWERED as error:
        page = render_template(
            "signup.html", mode=mode, error=error.message, username=username
        )
        return page, status_of(error)
    user = accounts.load_user_by_id(store(), user_id)
    login_user(user)
    flash("Account created. Claim your first sensor.")
    return redirect(url_for("owners.claim"))


@bp.route("/signin", methods=["GET", "POST"])
def signin():
    """Sign in with user name and password; rate-limited per address and account."""
    if request.method == "GET":
        return render_template("signin.html")
    username = request.form.get("username", "")[:254]
    account = username.strip().lower()[:254]
    wait = attempts_left("signin", limits.client_address(), "user:" + account)
    if wait:
        return too_many("signin.html", wait, username=username)
    user = accounts.authenticate(store(), username, request.form.get("password", ""))
    if user is None:
        page = render_template(
            "signin.html", error=accounts.SIGNIN_REFUSED, username=username
        )
        return page, 401
    login_user(user)
    return redirect(safe_next(request.args.get("next")))


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a local path only, never another site."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return url_for("owners.my_sensors")


@bp.post("/signout")
def signout():
    """End the session."""
    logout_user()
    flash("Signed out.")
    return redirect(url_for("accounts.signin"))


@bp.app_context_processor
def owner_links():
    """Whether the visitor is signed in, for the navigation of the owners' pages.

    Other pages have no session, so they never ask (nor load a user).
    """
    if request.blueprint not in SESSION_BLUEPRINTS:
        return {"signed_in": False}
    return {"signed_in": bool(current_user.is_authenticated)}
