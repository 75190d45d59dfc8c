"""Every setting of the engine, read and validated in one place (environment and an optional ``.env``).

The rest of the code receives a :class:`Settings` object; nothing reads the environment deep inside.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from health_analytics.redaction import redact_uri


class SettingsError(ValueError):
    """A setting has a bad value; the message names the variable and never shows a secret."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        frozen=True,
    )

    # SPEC §5
    mongo_uri: SecretStr = Field(SecretStr("mongodb://localhost:27017"), alias="MONGO_URI")
    mongo_db_name: str = Field("health-metrics", alias="MONGO_DB_NAME", pattern=r"^[a-zA-Z0-9_-]{1,63}$")
    health_metrics_collection: str = Field("healthmetrics", alias="HEALTH_METRICS_COLLECTION", min_length=1)
    analytics_collection: str = Field("analytics", alias="ANALYTICS_COLLECTION", min_length=1)
    dlq_directory: Path = Field(Path("./dlq"), alias="DLQ_DIRECTORY")
    spark_app_name: str = Field("HealthMetricsAnalytics", alias="SPARK_APP_NAME", min_length=1)
    batch_interval_seconds: int = Field(60, alias="BATCH_INTERVAL_SECONDS", gt=0)
    checkpoint_location: str = Field("./spark-checkpoints", alias="CHECKPOINT_LOCATION", min_length=1)
    backend_api_url: str = Field("http://localhost:5000/api", alias="BACKEND_API_URL", pattern=r"^https?://\S+$")
    service_token: SecretStr | None = Field(None, alias="SERVICE_TOKEN")
    analytics_history_days: int = Field(90, alias="ANALYTICS_HISTORY_DAYS", gt=0, le=3650)

    # Analytics settings named in SPEC §2
    anomaly_threshold: float = Field(2.0, alias="ANOMALY_THRESHOLD", gt=0)
    steps_streak_threshold: float = Field(1000.0, alias="STEPS_STREAK_THRESHOLD", ge=0)
    baseline_days: int = Field(30, alias="BASELINE_DAYS", gt=0, le=365)
    baseline_min_points: int = Field(7, alias="BASELINE_MIN_POINTS", ge=2)

    # Runtime
    mongo_write_attempts: int = Field(5, alias="MONGO_WRITE_ATTEMPTS", ge=1, le=20)
    spark_master: str = Field("local[*]", alias="SPARK_MASTER", min_length=1)
    spark_ui_enabled: bool = Field(False, alias="SPARK_UI_ENABLED")
    spark_shuffle_partitions: int = Field(8, alias="SPARK_SHUFFLE_PARTITIONS", gt=0)
    spark_log_level: str = Field("ERROR", alias="SPARK_LOG_LEVEL", pattern=r"^(ALL|DEBUG|ERROR|FATAL|INFO|OFF|TRACE|WARN)$")
    health_check_host: str = Field("127.0.0.1", alias="HEALTH_CHECK_HOST", min_length=1)
    health_check_port: int = Field(5001, alias="HEALTH_CHECK_PORT", ge=0, le=65535)
    # Streaming: how far before the checkpoint each poll looks again, for writers that commit out of order
    poll_overlap_seconds: int = Field(120, alias="POLL_OVERLAP_SECONDS", ge=0, le=86_400)
    outbox_directory: Path = Field(Path("./outbox"), alias="OUTBOX_DIRECTORY")
    events_concurrency: int = Field(4, alias="EVENTS_CONCURRENCY", ge=1, le=64)
    events_timeout_seconds: float = Field(5.0, alias="EVENTS_TIMEOUT_SECONDS", gt=0, le=300)
    localdb_dir: Path = Field(Path("./.localdb"), alias="LOCALDB_DIR")
    localdb_port: int = Field(27017, alias="LOCALDB_PORT", ge=0, le=65535)

    @field_validator("mongo_uri")
    @classmethod
    def _valid_mongo_uri(cls, v: SecretStr) -> SecretStr:
        from pymongo.uri_parser import parse_uri

        try:
            parse_uri(v.get_secret_value())
        except Exception:  # noqa: BLE001 - pymongo raises several types; the text may hold the password
            raise ValueError("not a valid MongoDB connection string (expected mongodb://host[:port][/...])") from None
        return v

    @property
    def mongo_uri_value(self) -> str:
        return self.mongo_uri.get_secret_value()

    @property
    def mongo_uri_redacted(self) -> str:
        return redact_uri(self.mongo_uri.get_secret_value())

    @property
    def events_enabled(self) -> bool:
        return self.service_token is not None and bool(self.service_token.get_secret_value())


def load_settings(**overrides: object) -> Settings:
    """Read the settings, turning any validation failure into one line naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_input=False, include_url=False):
            name = str(err["loc"][0]).upper() if err["loc"] else "settings"
            field = Settings.model_fields.get(str(err["loc"][0]).lower()) if err["loc"] else None
            if field is not None and field.alias:
                name = field.alias
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{name}: {msg}")
        raise SettingsError("invalid setting " + "; ".join(problems)) from None
