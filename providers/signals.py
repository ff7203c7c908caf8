"""Signals sent by the providers package.

The providers package must not import the webhooks app, so an in-process provider (the
simulator) hands its callbacks over through a signal instead of calling a view.
"""

from django.dispatch import Signal

callback_received = Signal()
"""A provider produced a callback in-process, as if it had been POSTed to our webhook URL.

Keyword arguments:

- ``sender``: the backend class (e.g. ``providers.backends.simulator.SmsBackend``);
- ``alias``: the provider alias, for ``get_provider(alias)``;
- ``kind``: ``"status"`` (a delivery report) or ``"inbound"`` (a text someone sent us);
- ``callback``: the signed :class:`providers.messages.Callback`.

A receiver must treat ``callback`` exactly as the HTTP webhook view treats a request:
``verify_callback()``, then ``parse_status_callback()`` / ``parse_inbound_callback()``,
then apply the result. Nothing is trusted because it came from inside the process.
"""
