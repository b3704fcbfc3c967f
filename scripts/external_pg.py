"""A PostgreSQL server started apart from the platform, the way an operator runs one: TCP with TLS only, and a
login role that is not a superuser and owns nothing but the platform's schema.

    python scripts/external_pg.py start DIR   # prints CLOUDFN_DATABASE_URL for it
    python scripts/external_pg.py stop DIR

The server is Debian's PostgreSQL (the embedded wheel's build has no TLS; scripts/test-deps.sh installs the
package): a separate postmaster in DIR with its own configuration, started by `pg_ctl`, not by the platform.
Run as root, it runs as the system user `cloudfn_extpg`. The role `cloudfn_app` gets a schema of the same
name, so PostgreSQL's default search_path ("$user", public) puts every platform table there; it cannot create
objects in `public`.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SYSTEM_USER = "cloudfn_extpg"
ROLE = "cloudfn_app"
DATABASE = "cloudfn"


def main(argv: list[str]) -> int:
    """Dispatch `start DIR` / `stop DIR`."""
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        print("usage: external_pg.py start|stop DIR", file=sys.stderr)
        return 2
    root = Path(argv[1]).resolve()
    if argv[0] == "stop":
        stop(root)
        return 0
    print(start(root))
    return 0


def start(root: Path) -> str:
    """Initialise and start a TLS-only server in ROOT; return the platform's URL for it."""
    if root.exists():
        stop(root)
        shutil.rmtree(root)
    root.mkdir(parents=True)
    root.chmod(0o755)
    data = root / "data"
    run_as = _server_user()
    _write_certificate(root)
    password = secrets.token_urlsafe(24)
    (root / "superuser.pw").write_text(secrets.token_urlsafe(24))
    _owned_by(run_as, root)
    _pg(run_as, "initdb", "-D", str(data), "-U", "postgres", "--auth=scram-sha-256",
        f"--pwfile={root / 'superuser.pw'}", "--encoding=utf8")
    port = _free_port()
    (data / "postgresql.auto.conf").write_text("\n".join([
        f"port = {port}", "listen_addresses = '127.0.0.1'", f"unix_socket_directories = '{root}'",
        "ssl = on", f"ssl_cert_file = '{root / 'server.crt'}'", f"ssl_key_file = '{root / 'server.key'}'",
        "max_connections = 300", "fsync = off", ""]))
    (data / "pg_hba.conf").write_text("\n".join([
        "local all postgres scram-sha-256",
        f"hostssl {DATABASE} {ROLE} 127.0.0.1/32 scram-sha-256",
        "hostssl all postgres 127.0.0.1/32 scram-sha-256",
        "host all all 0.0.0.0/0 reject", ""]))
    _owned_by(run_as, root)
    _pg(run_as, "pg_ctl", "-D", str(data), "-l", str(root / "server.log"), "-w", "start")
    _provision(root, port, password)
    return (f"postgresql://{ROLE}:{password}@127.0.0.1:{port}/{DATABASE}"
            f"?sslmode=verify-full&sslrootcert={root / 'server.crt'}")


def stop(root: Path) -> None:
    """Stop the server in ROOT if it runs."""
    data = root / "data"
    if (data / "postmaster.pid").exists():
        _pg(_server_user(), "pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop")


def _provision(root: Path, port: int, password: str) -> None:
    """The platform's database, its login role (no superuser, no createdb/createrole) and its one schema."""
    import psycopg
    from psycopg import sql

    su = (f"host=127.0.0.1 port={port} user=postgres password={(root / 'superuser.pw').read_text()} "
          f"sslmode=verify-full sslrootcert={root / 'server.crt'}")
    with psycopg.connect(su + " dbname=postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {}").format(
            sql.Identifier(ROLE), sql.Literal(password)))
        conn.execute(f"CREATE DATABASE {DATABASE} OWNER postgres")
    with psycopg.connect(su + f" dbname={DATABASE}", autocommit=True) as conn:
        conn.execute(f"REVOKE ALL ON DATABASE {DATABASE} FROM PUBLIC")
        conn.execute(f"GRANT CONNECT, TEMPORARY ON DATABASE {DATABASE} TO {ROLE}")
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        conn.execute(f"CREATE SCHEMA {ROLE} AUTHORIZATION {ROLE}")


def _write_certificate(root: Path) -> None:
    """A self-signed certificate for 127.0.0.1 (clients verify it with sslmode=verify-full)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (root / "server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path = root / "server.key"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)


def _server_user() -> str | None:
    """The system user the server runs as when we are root (PostgreSQL refuses to run as root)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SYSTEM_USER],
                       check=True)
    return SYSTEM_USER


def _owned_by(user: str | None, root: Path) -> None:
    """Give ROOT's tree to the server's user."""
    if user is None:
        return
    entry = pwd.getpwnam(user)
    for path in [root, *root.rglob("*")]:
        os.chown(path, entry.pw_uid, entry.pw_gid, follow_symlinks=False)


def _pg(user: str | None, tool: str, *args: str) -> None:
    """Run one of the server's binaries, as USER when given."""
    cmd = [str(_binaries() / tool), *args]
    if user is not None:
        cmd = ["runuser", "-u", user, "--", *cmd]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd="/")


def _binaries() -> Path:
    """The newest Debian PostgreSQL server's bin directory."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name))
    if not found:
        raise SystemExit("no PostgreSQL server under /usr/lib/postgresql: run scripts/test-deps.sh as root "
                         "(it installs Debian's postgresql package)")
    return found[-1].parent


def _free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
