"""Fills the disk: one file past max_file_mb, or many files each under it."""


def handler(event, context):
    chunk = b"d" * (1024 * 1024)
    if event["mode"] == "one":
        with open("huge.bin", "wb") as fh:
            for _ in range(event["mb"]):
                fh.write(chunk)
        return "one written"
    for i in range(event["mb"]):
        with open(f"part{i}.bin", "wb") as fh:
            fh.write(chunk)
    return "many written"
