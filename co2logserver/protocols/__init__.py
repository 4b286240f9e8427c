"""Parsers of the firmware protocols (SPEC §9): bytes and headers in, a
:class:`co2logserver.devices.DeviceRequest` out. Pure: no Flask, no database."""
