"""Owner accounts from the command line (SPEC §12): create, disable, reset, invite,
claim codes and transfers, each one clear line on success or failure."""

from __future__ import annotations

import click

from co2logserver.cli.app import build_app, main


def owner_task(ctx: click.Context, task, *args):
    """Run an accounts task on the app's store; its errors are one clear line."""
    from co2logserver.errors import ApiError
    from co2logserver.store import get_store
    from co2logserver.store.errors import StorageUnavailable

    app = build_app(ctx)
    try:
        return task(get_store(app), *args)
    except (ApiError, StorageUnavailable) as error:
        raise click.ClickException(error.message) from None


@main.command("create-user")
@click.argument("username")
@click.option("--admin", is_flag=True, help="An admin sees every sensor exactly.")
@click.password_option(help="The password (asked for when not given).")
@click.pass_context
def create_user_command(ctx, username, admin, password):
    """Create an owner account (whatever CO2LOGSERVER_SIGNUP says)."""
    from co2logserver import accounts

    owner_task(ctx, accounts.create_user, username, password, admin)
    click.echo(f"user {username.strip().lower()} created")


@main.command("disable-user")
@click.argument("username")
@click.option("--enable", is_flag=True, help="Enable a disabled account again.")
@click.pass_context
def disable_user_command(ctx, username, enable):
    """Disable an account: its sessions end, it cannot sign in."""
    from co2logserver import accounts

    owner_task(ctx, accounts.set_disabled, username, not enable)
    click.echo(f"user {username.strip().lower()} {'enabled' if enable else 'disabled'}")


@main.command("reset-password")
@click.argument("username")
@click.password_option(help="The new password (asked for when not given).")
@click.pass_context
def reset_password_command(ctx, username, password):
    """Set a new password; the account's other sessions end."""
    from co2logserver import accounts

    owner_task(ctx, accounts.reset_password, username, password)
    click.echo(f"password of {username.strip().lower()} reset")


@main.command("invite")
@click.pass_context
def invite_command(ctx):
    """Print a new invitation code (for CO2LOGSERVER_SIGNUP = "invitation")."""
    from co2logserver import accounts

    click.echo(owner_task(ctx, accounts.invite))


@main.command("claim-code")
@click.argument("suid")
@click.pass_context
def claim_code_command(ctx, suid):
    """Print a new claim code for a sensor (rogue, or a device that lost its code).

    It works once, beside the code a secure sensor derives from its SECRET, and
    replaces an earlier issued one. Hand it only to the sensor's owner.
    """
    from co2logserver import accounts

    click.echo(owner_task(ctx, accounts.issue_claim_code, suid))


@main.command("transfer-sensor")
@click.argument("suid")
@click.argument("username")
@click.pass_context
def transfer_sensor_command(ctx, suid, username):
    """Give a sensor to another owner account."""
    from co2logserver import accounts

    suid = owner_task(ctx, accounts.transfer, suid, username)
    click.echo(f"sensor {suid} now belongs to {username.strip().lower()}")
