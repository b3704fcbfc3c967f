"""Allocates `mb` megabytes (default 50), touches every page, then frees it."""


def handler(event, context):
    mb = int((event or {}).get("mb", 50))
    block = bytearray(mb * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    return {"allocated_mb": mb, "checksum": sum(block[::4096])}
