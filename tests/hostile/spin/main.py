"""Spins forever, in Python and in a thread."""
import threading


def _spin():
    while True:
        pass


def handler(event, context):
    threading.Thread(target=_spin, daemon=True).start()
    _spin()
