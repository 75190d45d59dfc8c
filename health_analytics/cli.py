"""The `health-analytics` command: parses arguments, calls the library, presents the results."""

from __future__ import annotations

import datetime as dt
import sys
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from health_analytics.settings import Settings, SettingsError, load_settings

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
localdb_app = typer.Typer(no_args_is_help=True, help="Build, start and stop the embedded local server (FerretDB on SQLite).")
app.add_typer(localdb_app, name="localdb")

console = Console()
err_console = Console(stderr=True)


def _settings(ctx: typer.Context) -> Settings:
    return ctx.obj


def _fail(message: str, code: int = 1) -> None:
    err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@app.callback()
def main(ctx: typer.Context) -> None:
    """Spark analytics engine of a personal health-metrics app."""
    try:
        ctx.obj = load_settings()
    except SettingsError as exc:
        _fail(str(exc))


# -- local server -----------------------------------------------------------------------------------
def _localdb(settings: Settings):
    from health_analytics.localdb import LocalDb

    return LocalDb(settings.localdb_dir)


@localdb_app.command("start")
def localdb_start(ctx: typer.Context, port: Optional[int] = typer.Option(None, help="TCP port on 127.0.0.1 (0 = a free one); default LOCALDB_PORT")) -> None:
    """Build (once) and start the local server in the background."""
    from health_analytics.localdb import LocalDbError

    settings = _settings(ctx)
    server = _localdb(settings)
    try:
        if not server.binary.exists():
            console.print("building the local server (FerretDB v1.24.2, first time only)…")
        status = server.start(port=settings.localdb_port if port is None else port)
    except LocalDbError as exc:
        _fail(str(exc))
        return
    console.print(f"[green]✓[/green] local server running (pid {status.pid}) at {status.uri}, data in {status.data_dir}")
    console.print("  stop it with: health-analytics localdb stop")


@localdb_app.command("stop")
def localdb_stop(ctx: typer.Context) -> None:
    """Stop the local server if it runs."""
    stopped = _localdb(_settings(ctx)).stop()
    console.print("[green]✓[/green] local server stopped" if stopped else "local server was not running")


@localdb_app.command("status")
def localdb_status(ctx: typer.Context) -> None:
    """Say whether the local server runs; exit 1 when it does not."""
    status = _localdb(_settings(ctx)).status()
    if status.running:
        console.print(f"[green]✓[/green] running (pid {status.pid}) at {status.uri}, data in {status.data_dir}")
    else:
        console.print(f"[red]✗[/red] not running (data folder {status.data_dir}); start it with: health-analytics localdb start")
        raise typer.Exit(1)


# -- seed -------------------------------------------------------------------------------------------
@app.command()
def seed(
    ctx: typer.Context,
    users: int = typer.Option(100, min=1, help="number of synthetic users"),
    days: int = typer.Option(90, min=1, help="days of history per user, ending today"),
    seed_value: int = typer.Option(42, "--seed", help="random seed: the same seed gives the same documents"),
    invalid_share: float = typer.Option(0.0, min=0.0, max=0.9, help="share of documents that break a SPEC §1 rule"),
    pattern: bool = typer.Option(False, help="add the worked-example user of SPEC §2"),
) -> None:
    """Write synthetic `healthmetrics` documents (idempotent for a given seed)."""
    from health_analytics.mongo_client import describe_error, open_database
    from health_analytics.seed import SeedPlan, seed_collection

    settings = _settings(ctx)
    now = dt.datetime.now(dt.timezone.utc)
    try:
        plan = SeedPlan(users=users, days=days, seed=seed_value, invalid_share=invalid_share, pattern=pattern, today=now.date(), now=now)
    except ValueError as exc:
        _fail(str(exc))
        return
    client, db = open_database(settings)
    try:
        with Progress(TextColumn("seeding"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console, transient=True) as progress:
            task = progress.add_task("seed", total=None)
            report = seed_collection(db[settings.health_metrics_collection], plan, progress=lambda n: progress.update(task, completed=n))
    except Exception as exc:  # noqa: BLE001 - shown as one safe line
        _fail(f"seeding {settings.mongo_uri_redacted} failed: {describe_error(exc, settings.mongo_uri_value)}")
        return
    finally:
        client.close()
    console.print(
        f"[green]✓[/green] {report.generated:,} documents for {report.users:,} users: {report.inserted:,} inserted, "
        f"{report.already_present:,} already present, {report.invalid:,} invalid on purpose, in {report.duration_s:.1f}s"
    )


# -- doctor / inspect -------------------------------------------------------------------------------
@app.command()
def doctor(ctx: typer.Context, spark: bool = typer.Option(True, help="also start a Spark session")) -> None:
    """Check Java, Spark, the database and the collections; exit 1 when something required is broken."""
    from health_analytics.doctor import run_checks

    report = run_checks(_settings(ctx), spark=spark)
    for check in report.checks:
        mark = "[green]✓[/green]" if check.ok else ("[red]✗[/red]" if check.required else "[yellow]![/yellow]")
        line = f"{mark} {check.name}: {check.detail}"
        if not check.ok and check.fix:
            line += f" — fix: {check.fix}"
        console.print(line, highlight=False, soft_wrap=True)
    if not report.healthy:
        raise typer.Exit(1)


@app.command()
def inspect(ctx: typer.Context) -> None:
    """Summarise the data: documents, users, date range, sources, metric coverage, analytics."""
    from health_analytics.inspection import inspect_data
    from health_analytics.mongo_client import describe_error, open_database

    settings = _settings(ctx)
    client, db = open_database(settings)
    try:
        info = inspect_data(db, health_collection=settings.health_metrics_collection, analytics_collection=settings.analytics_collection)
    except Exception as exc:  # noqa: BLE001
        _fail(f"reading {settings.mongo_uri_redacted} failed: {describe_error(exc, settings.mongo_uri_value)}")
        return
    finally:
        client.close()

    overview = Table(title=f"{settings.mongo_db_name}.{settings.health_metrics_collection}", show_header=False)
    overview.add_row("documents", f"{info.documents:,}")
    overview.add_row("users", f"{info.users:,}")
    overview.add_row("days", f"{info.first_day} … {info.last_day}" if info.first_day else "—")
    if info.analytics_count is not None:
        overview.add_row(f"{settings.analytics_collection} documents", f"{info.analytics_count:,}")
        overview.add_row("newest calculatedAt", str(info.newest_calculated_at or "—"))
    console.print(overview)

    sources = Table("source", "documents", title="by source")
    for name, count in sorted(info.by_source.items(), key=lambda kv: -kv[1]):
        sources.add_row(str(name), f"{count:,}")
    console.print(sources)

    coverage = Table("metric", "values", "coverage", title="metric coverage")
    for metric, count in info.metric_coverage.items():
        share = 100.0 * count / info.documents if info.documents else 0.0
        coverage.add_row(metric, f"{count:,}", f"{share:.1f} %")
    console.print(coverage)


def run() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
