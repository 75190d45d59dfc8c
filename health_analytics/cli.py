"""The `health-analytics` command: parses arguments, calls the library, presents the results."""

from __future__ import annotations

import datetime as dt
import sys
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from health_analytics.settings import Settings, SettingsError, load_settings

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
localdb_app = typer.Typer(no_args_is_help=True, help="Build, start and stop the embedded local server (FerretDB on SQLite).")
app.add_typer(localdb_app, name="localdb")
dlq_app = typer.Typer(no_args_is_help=True, help="The dead-letter queue: snapshots that could not be written.")
app.add_typer(dlq_app, name="dlq")

console = Console()
err_console = Console(stderr=True)


def _settings(ctx: typer.Context) -> Settings:
    return ctx.obj


def _fail(message: str, code: int = 1) -> None:
    err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
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
        line = f"{mark} {escape(check.name)}: {escape(check.detail)}"
        if not check.ok and check.fix:
            line += f" — fix: {escape(check.fix)}"
        console.print(line, highlight=False, soft_wrap=True)
    if not report.healthy:
        raise typer.Exit(1)


@app.command()
def inspect(ctx: typer.Context, invalid: bool = typer.Option(True, help="also count invalid documents by kind (starts Spark)")) -> None:
    """Summarise the data: documents, users, date range, sources, metric coverage, invalid documents, analytics."""
    from health_analytics.inspection import inspect_data
    from health_analytics.mongo_client import describe_error, open_database

    settings = _settings(ctx)
    client, db = open_database(settings)
    rejected: dict[str, int] | None = None
    try:
        info = inspect_data(db, health_collection=settings.health_metrics_collection, analytics_collection=settings.analytics_collection)
        if invalid and info.documents:
            from health_analytics.jobs.rejections import count_rejections
            from health_analytics.spark_session import build_spark_session

            with console.status("validating every document with Spark", spinner="dots"):
                spark = build_spark_session(settings)
                try:
                    rejected = count_rejections(spark, settings)
                finally:
                    spark.stop()
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

    if rejected is not None:
        kinds = Table("reason", "rejections", title="invalid documents and values by kind (docs/ANALYTICS.md)")
        for reason, count in sorted(rejected.items(), key=lambda kv: -kv[1]):
            kinds.add_row(reason, f"{count:,}")
        if not rejected:
            kinds.add_row("none", "0")
        console.print(kinds)


# -- batch / verify ---------------------------------------------------------------------------------
def parse_since(text: str, now: dt.datetime) -> dt.datetime:
    """`30d`, `12h`, `90m` back from now, or an ISO-8601 date/time (UTC unless it says otherwise)."""
    units = {"d": "days", "h": "hours", "m": "minutes"}
    if text and text[-1] in units and text[:-1].isdigit():
        return now - dt.timedelta(**{units[text[-1]]: int(text[:-1])})
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter("expected e.g. 30d, 12h, 2026-11-01 or 2026-11-01T08:00:00Z") from None
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value


@app.command()
def batch(
    ctx: typer.Context,
    since: str = typer.Option("30d", help="process users with documents updated since then (e.g. 30d, 2026-11-01)"),
    full: bool = typer.Option(False, "--full", help="recompute every user from all their history"),
    user: list[str] = typer.Option([], "--user", help="only this user id (repeatable)"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as JSON"),
) -> None:
    """Compute analytics snapshots from `healthmetrics` and write them to `analytics`.

    Exit code: 0 all written, 2 some snapshots went to the dead-letter queue, 1 the job failed.
    """
    import json

    from health_analytics.jobs.batch import run_batch
    from health_analytics.mongo_client import describe_error
    from health_analytics.spark_session import JavaError, build_spark_session

    settings = _settings(ctx)
    now = dt.datetime.now(dt.timezone.utc)
    since_at = None if full else parse_since(since, now)
    try:
        spark = build_spark_session(settings)
    except JavaError as exc:
        _fail(str(exc))
        return
    try:
        with console.status("starting", spinner="dots") as status:
            summary = run_batch(spark, settings, since=since_at, users=user or None, now=now,
                                progress=lambda msg: status.update(msg) if not as_json else None)
    except Exception as exc:  # noqa: BLE001 - one safe line, exit 1
        _fail(f"batch failed: {describe_error(exc, settings.mongo_uri_value)}")
        return
    finally:
        spark.stop()
    if as_json:
        print(json.dumps(summary.as_dict(), default=str, indent=2))
    else:
        _print_summary(summary)
    raise typer.Exit(summary.exit_code)


@app.command()
def stream(ctx: typer.Context) -> None:
    """Run the streaming service: a micro-batch every BATCH_INTERVAL_SECONDS until SIGTERM or Ctrl+C.

    Prints one JSON line per batch on stdout; status lines go to stderr. Endpoints: /health,
    /health/live, /health/ready and /metrics on HEALTH_CHECK_HOST:HEALTH_CHECK_PORT.
    """
    import logging

    from health_analytics.jobs.stream import serve
    from health_analytics.spark_session import JavaError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)

    def batch_line(line: str) -> None:
        print(line, flush=True)

    try:
        code = serve(_settings(ctx), say=lambda line: err_console.print(escape(line), highlight=False, soft_wrap=True),
                     batch_log=batch_line)
    except JavaError as exc:
        _fail(str(exc))
        return
    raise typer.Exit(code)


def _print_summary(summary) -> None:
    for warning in summary.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False)
    head = Table(title=f"batch {summary.batch_id} ({summary.mode})", show_header=False)
    head.add_row("changed documents", f"{summary.changed_documents:,}")
    head.add_row("users", f"{summary.users:,}")
    head.add_row("documents read", f"{summary.documents_read:,}")
    head.add_row("rejected", ", ".join(f"{k} {v:,}" for k, v in summary.rejected.items()) or "0")
    head.add_row("snapshots", f"{summary.snapshots:,} ({summary.inserted:,} inserted, {summary.updated:,} updated)")
    head.add_row("stale snapshots deleted", f"{summary.deleted:,}")
    head.add_row("dead-lettered", f"{summary.dead_lettered:,}" + (f" in {len(summary.dlq_files)} file(s)" if summary.dlq_files else ""))
    head.add_row("duration", f"{summary.duration_s:.1f}s")
    console.print(head)
    if summary.anomalies:
        t = Table("user", "metric", "day", "value", "expected", "z", "severity", title="anomalies (7-day snapshots)")
        for a in summary.anomalies:
            t.add_row(a["userId"], a["metricType"], a["day"], f"{a['value']:g}", f"{a['expected']:.1f}", f"{a['z']:.2f}", a["severity"])
        console.print(t)
    if summary.streaks:
        t = Table("user", "metric", "days", "since", title="longest current streaks")
        for s in summary.streaks:
            t.add_row(s["userId"], s["metricType"], str(s["days"]), s["since"])
        console.print(t)
    if summary.trends:
        t = Table("user", "metric", "trend", "change", "7-day average", title="strongest trends")
        for tr in summary.trends:
            t.add_row(tr["userId"], tr["metricType"], tr["trend"], f"{tr['percent']:+.1f} %", f"{tr['average']:.1f}")
        console.print(t)
    if summary.dead_lettered:
        console.print("[yellow]some snapshots could not be written[/yellow]; retry them with: health-analytics dlq retry --all")


@app.command("verify")
def verify_cmd(
    ctx: typer.Context,
    users: Optional[int] = typer.Option(20, help="how many users to check (a deterministic sample)"),
    all_users: bool = typer.Option(False, "--all", help="check every user"),
    seed_value: int = typer.Option(0, "--seed", help="sample seed"),
) -> None:
    """Recompute users with the reference implementation and compare with `analytics`; exit 1 on any mismatch."""
    from health_analytics.jobs.verify import verify
    from health_analytics.mongo_client import describe_error

    settings = _settings(ctx)
    try:
        report = verify(settings, sample=None if all_users else users, seed=seed_value)
    except Exception as exc:  # noqa: BLE001
        _fail(f"verify failed: {describe_error(exc, settings.mongo_uri_value)}")
        return
    for m in report.mismatches:
        console.print(f"[red]✗[/red] {escape(str(m))}", highlight=False, soft_wrap=True)
    mark = "[green]✓[/green]" if report.ok else "[red]✗[/red]"
    console.print(f"{mark} {report.users} users: {report.expected_snapshots:,} expected snapshots, {report.stored_snapshots:,} stored, "
                  f"{len(report.mismatches)} mismatches")
    if not report.ok:
        raise typer.Exit(1)


# -- dead-letter queue ------------------------------------------------------------------------------
@dlq_app.command("list")
def dlq_list(ctx: typer.Context) -> None:
    """Pending dead-letter files with their record counts and errors."""
    from health_analytics.dead_letter import DeadLetterQueue

    settings = _settings(ctx)
    infos = DeadLetterQueue(settings.dlq_directory).summary()
    if not infos:
        console.print(f"[green]✓[/green] no pending dead-letter files in {settings.dlq_directory}")
        return
    table = Table("file", "created (UTC)", "records", "errors", title=f"dead-letter queue {settings.dlq_directory}")
    for info in infos:
        errors = "; ".join(f"{n}× {text[:80]}" for text, n in sorted(info.errors.items(), key=lambda kv: -kv[1])[:3])
        table.add_row(info.path.name, f"{info.created:%Y-%m-%d %H:%M:%S}", f"{info.records:,}", errors)
    console.print(table)


@dlq_app.command("retry")
def dlq_retry(
    ctx: typer.Context,
    files: list[str] = typer.Argument(None, help="dead-letter files to retry"),
    all_files: bool = typer.Option(False, "--all", help="retry every pending file"),
) -> None:
    """Write dead-lettered snapshots again (idempotent); fully written files move to processed/."""
    from health_analytics.dead_letter import DeadLetterQueue
    from health_analytics.mongo_client import connect, describe_error, is_local_server
    from health_analytics.mongo_sink import BULK_SIZE, write_documents
    from health_analytics.redaction import uri_password

    settings = _settings(ctx)
    if not files and not all_files:
        _fail("name the files to retry, or pass --all")
    queue = DeadLetterQueue(settings.dlq_directory)
    try:
        with connect(settings.mongo_uri_value) as client:
            swap = is_local_server(client)
            collection = client[settings.mongo_db_name][settings.analytics_collection]
            report = queue.retry(
                None if all_files else files,
                lambda docs: write_documents(collection, docs, swap=swap, bulk_size=5000 if swap else BULK_SIZE,
                                             secret=uri_password(settings.mongo_uri_value)),
            )
    except Exception as exc:  # noqa: BLE001
        _fail(f"retry failed: {describe_error(exc, settings.mongo_uri_value)}")
        return
    console.print(f"{'[green]✓[/green]' if not report.still_failed else '[yellow]![/yellow]'} {report.files} file(s): "
                  f"{report.written:,} snapshots written, {report.still_failed:,} still failing; "
                  f"{len(report.processed)} moved to processed/")
    if report.still_failed:
        raise typer.Exit(2)


def run() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
