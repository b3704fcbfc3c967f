"""Always fails with an exception (a fixture for error handling)."""


class PaymentDeclined(Exception):
    pass


def handler(event, context):
    print("about to fail")
    raise PaymentDeclined(f"card declined for order {(event or {}).get('order', '?')}")
