"""Echo with a greeting: an unmodified AWS Lambda-style handler."""

import logging

logger = logging.getLogger()
logger.setLevel(logging.INFO)


def handler(event, context):
    name = (event or {}).get("name", "world") if isinstance(event, dict) else "world"
    logger.info("greeting %s", name)
    return {"greeting": f"Hello, {name}!", "request_id": context.aws_request_id, "echo": event}
