"""Allocates (and touches) twice its memory limit."""


def handler(event, context):
    blocks = []
    for _ in range(event["mb"] * 2):
        block = bytearray(1024 * 1024)
        block[::4096] = b"x" * len(block[::4096])
        blocks.append(block)
    return len(blocks)
