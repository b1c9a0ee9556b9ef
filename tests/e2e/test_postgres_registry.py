"""The whole flow against an `mlflow server` whose backend store is a real PostgreSQL: train,
register, alias, gateway load, predict, reload. SQLite is what the rest of the suite uses; this is
the backend users move to when they outgrow one machine (README, "The registry on PostgreSQL"),
so it must work end to end.

The cluster is Debian's `postgresql` package, run from its binaries in a temporary data directory
on a free port; nothing touches a system-wide cluster."""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pytest

from scripts.local_registry import start_mlflow_server, wait_until_healthy
from tests.helpers import (
    MODEL_NAME,
    N_CANDLES,
    SEQ_LEN,
    free_port,
    point_forecasts,
    real_windows,
    run_gateway,
    stop_process,
    train_behind,
)

PG_SUPERUSER = "postgres"
PG_DATABASE = "mlflow"
INSTALL_HINT = "apt-get install -y --no-install-recommends postgresql"


def _pg_version(initdb: Path) -> tuple[int, ...]:
    # /usr/lib/postgresql/<ver>/bin/initdb: newest major wins when several are installed.
    return tuple(int(p) for p in re.findall(r"\d+", initdb.parents[1].name)) or (0,)


def find_pg_bin_dir() -> Path | None:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=_pg_version)
    if candidates:
        return candidates[-1].parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def _try_apt_install() -> str:
    """Install Debian's postgresql (as .ci/run does) so a plain `make test` on a fresh machine
    runs this test too; returns why it could not, or "" on success."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return "not root or no apt-get"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", "postgresql"],
    ):
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired:
            return f"`{' '.join(command)}` took over 15 minutes"
        if done.returncode != 0:
            return f"`{' '.join(command)}` failed: {(done.stderr or done.stdout)[-500:]}"
    return ""


def require_pg_bin_dir() -> Path:
    bin_dir = find_pg_bin_dir()
    why = ""
    if bin_dir is None:
        why = _try_apt_install()
        bin_dir = find_pg_bin_dir()
    if bin_dir is not None:
        return bin_dir
    message = (
        f"PostgreSQL cannot be installed here (no initdb under /usr/lib/postgresql/*/bin or on "
        f"PATH; {why or 'apt-get ran but installed no initdb'}); install it with `{INSTALL_HINT}`"
    )
    # .ci/run installs the package before `make test`: on CI a missing server is a broken
    # set-up, and a skip would hide it.
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class PgCluster:
    bin_dir: Path
    base_dir: Path  # owned by the user the server runs as; holds data/, the socket and the log
    port: int
    run_as: list[str]  # prefix that runs a command as that user (postgres refuses root)

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "postgres.log"

    def run(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            [*self.run_as, str(self.bin_dir / tool), *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            log = (
                self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""
            )
            raise RuntimeError(
                f"{tool} {' '.join(args)} exited {done.returncode}:\n"
                f"{done.stdout}{done.stderr}\n{log}"
            )

    def start(self) -> None:
        # Trust auth on loopback only, no fsync: a throwaway cluster that must start fast.
        self.run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            PG_SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.base_dir} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        # -w: pg_ctl returns once the server accepts connections (it polls, we need not).
        self.run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self.run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")

    def dsn(self, dbname: str) -> str:
        return f"host=127.0.0.1 port={self.port} user={PG_SUPERUSER} dbname={dbname}"

    def sqlalchemy_uri(self, dbname: str) -> str:
        return f"postgresql+psycopg://{PG_SUPERUSER}@127.0.0.1:{self.port}/{dbname}"


@pytest.fixture(scope="module")
def postgres() -> Iterator[PgCluster]:
    import psycopg

    bin_dir = require_pg_bin_dir()
    # Outside pytest's tmp dirs: those sit under a root-only 0700 directory that the postgres
    # user could not traverse.
    base_dir = Path(tempfile.mkdtemp(prefix="pg-registry-"))
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(base_dir)
            pytest.fail("running as root but there is no `postgres` user to run PostgreSQL as")
        os.chown(base_dir, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    else:
        run_as = []
    cluster = PgCluster(bin_dir, base_dir, free_port(), run_as)
    try:
        cluster.start()
        with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {PG_DATABASE}")
        yield cluster
    finally:
        try:
            cluster.stop()
        finally:
            shutil.rmtree(base_dir, ignore_errors=True)


@dataclass(frozen=True)
class PgRegistry:
    uri: str
    log_file: Path


@pytest.fixture(scope="module")
def pg_registry(
    postgres: PgCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PgRegistry]:
    data_dir = tmp_path_factory.mktemp("mlflow-pg")
    port = free_port()
    log_file = data_dir / "server.log"
    process = start_mlflow_server(
        data_dir,
        "127.0.0.1",
        port,
        log_file,
        backend_store_uri=postgres.sqlalchemy_uri(PG_DATABASE),
    )
    try:
        try:
            # The first start on a fresh database runs every schema migration.
            wait_until_healthy(f"http://127.0.0.1:{port}", timeout=180, process=process)
        except (RuntimeError, TimeoutError) as e:
            raise AssertionError(f"{e}\n{log_file.read_text(errors='replace')[-3000:]}") from e
        yield PgRegistry(f"http://127.0.0.1:{port}", log_file)
    finally:
        stop_process(process, 15)


@contextlib.contextmanager
def tracking_uri(uri: str) -> Iterator[None]:
    """Point this process's MLflow client at `uri`, then back: the setting is process-global and
    the session `registry` fixture's SQLite server is what the other tests expect."""
    from mlflow.tracking._tracking_service.utils import is_tracking_uri_set

    previous = mlflow.get_tracking_uri() if is_tracking_uri_set() else None
    previous_env = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        yield
    finally:
        # None unsets it (and the variable); the variable is then put back as it was.
        mlflow.set_tracking_uri(previous)  # type: ignore[arg-type]
        if previous_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous_env


def test_train_register_serve_and_reload_against_a_postgresql_backed_registry(
    postgres: PgCluster, pg_registry: PgRegistry, tmp_path: Path
) -> None:
    import psycopg
    from mlflow import MlflowClient

    from model_wrapper.data.synthetic import synthetic_candles
    from model_wrapper.training.recipe import TrainConfig

    with tracking_uri(pg_registry.uri):
        assert mlflow.get_registry_uri() == pg_registry.uri
        config = TrainConfig(seq_len=SEQ_LEN, epochs=1)
        # Different data, so the two versions answer differently and a reload is visible.
        v1 = train_behind(synthetic_candles(N_CANDLES, seed=11), config, "staging")
        env = {"MLFLOW_TRACKING_URI": pg_registry.uri, "MODEL_ALIAS": "staging"}
        # The gateway loads v1 (TensorFlow import, XLA compiles: the slow part) while this
        # process trains v2 and computes the expected answers; wait_loaded below joins them.
        with run_gateway(env, tmp_path, wait_loaded=False) as gw:
            v2 = train_behind(synthetic_candles(N_CANDLES, seed=12), config, "Production")
            assert (v1, v2) == ("1", "2")  # a fresh database: numbering from 1
            client = MlflowClient()
            assert client.get_model_version_by_alias(MODEL_NAME, "staging").version == "1"
            assert client.get_model_version_by_alias(MODEL_NAME, "Production").version == "2"

            # The registry really lives in PostgreSQL (not in a stray local store).
            with psycopg.connect(postgres.dsn(PG_DATABASE)) as conn:
                rows = conn.execute(
                    "SELECT alias, version FROM registered_model_aliases WHERE name = %s",
                    (MODEL_NAME,),
                ).fetchall()
            assert sorted(rows) == [("Production", 2), ("staging", 1)]

            x = real_windows(2)
            expected = {
                version: point_forecasts(
                    mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{version}"), x
                )
                for version in ("1", "2")
            }
            assert not np.allclose(expected["1"], expected["2"], rtol=1e-7)

            def predict_all(version: str) -> None:
                for window, value in zip(x, expected[version], strict=True):
                    r = httpx.post(f"{gw.url}/predict", json={"X": window.tolist()}, timeout=30)
                    assert r.status_code == 200, r.text
                    answer = r.json()
                    assert answer["model_version"] == version
                    assert answer["pred_btc_close_next"] == pytest.approx(float(value), rel=1e-5)

            gw.wait_loaded()
            assert gw.health() == {
                "status": "ok",
                "model_loaded": True,
                "model_alias": "staging",
                "model_version": "1",
                "model_runtime": "numpy",
                "shadow": None,
            }
            predict_all("1")
            r = httpx.post(f"{gw.url}/reload", json={"alias": "Production"}, timeout=60)
            assert r.status_code == 200, r.text
            assert r.json() == {
                "status": "reloaded",
                "model_alias": "Production",
                "model_version": "2",
            }
            assert gw.health()["model_version"] == "2"
            predict_all("2")
