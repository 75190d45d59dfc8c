"""The application checkpoint: `last_processed_timestamp.txt` (ISO-8601 UTC) in CHECKPOINT_LOCATION.

It goes through Spark's Hadoop FileSystem, not `open()`, so the same job keeps it on a local disk, HDFS
or an object store (`s3a://…`) unchanged. A write goes to a temporary file that is then renamed over the
old one (FileContext rename with OVERWRITE: atomic on local disks and HDFS). Where the file system has no
FileContext binding (some object stores), the file is overwritten in one PUT, which object stores make
visible all at once. A reader therefore sees the old timestamp or the new one, never a torn file.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

FILE_NAME = "last_processed_timestamp.txt"
UTC = dt.timezone.utc


class CheckpointError(RuntimeError):
    """The checkpoint file exists but does not hold an ISO-8601 timestamp."""


def format_timestamp(moment: dt.datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_timestamp(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class TimestampCheckpoint:
    def __init__(self, spark: SparkSession, location: str) -> None:
        jvm = spark._jvm  # noqa: SLF001 - Spark's Hadoop FileSystem is only reachable through the JVM
        self._jvm = jvm
        self._gateway = spark.sparkContext._gateway  # noqa: SLF001
        self._conf = spark._jsc.hadoopConfiguration()  # noqa: SLF001
        hadoop_fs = jvm.org.apache.hadoop.fs
        self._dir = hadoop_fs.Path(location)
        self._path = hadoop_fs.Path(self._dir, FILE_NAME)
        self._fs = self._path.getFileSystem(self._conf)
        self.location = str(self._path.toString())

    def read(self) -> dt.datetime | None:
        """The last processed `updatedAt`, or None when no batch has completed yet."""
        if not self._fs.exists(self._path):
            return None
        stream = self._fs.open(self._path)
        try:
            raw = bytes(self._jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
        finally:
            stream.close()
        try:
            return parse_timestamp(raw.decode("utf-8"))
        except ValueError:
            raise CheckpointError(f"{self.location} does not hold an ISO-8601 timestamp; fix or delete it") from None

    def write(self, moment: dt.datetime) -> None:
        data = bytearray((format_timestamp(moment) + "\n").encode("utf-8"))
        self._fs.mkdirs(self._dir)
        tmp = self._jvm.org.apache.hadoop.fs.Path(self._dir, f".{FILE_NAME}.{uuid.uuid4().hex}.tmp")
        try:
            context = self._jvm.org.apache.hadoop.fs.FileContext.getFileContext(self._path.toUri(), self._conf)
        except Exception:  # noqa: BLE001 - no FileContext binding for this scheme: one atomic PUT instead
            self._put(self._path, data)
            return
        self._put(tmp, data)
        try:
            rename = self._jvm.org.apache.hadoop.fs.Options.Rename
            options = self._gateway.new_array(rename, 1)
            options[0] = rename.OVERWRITE
            context.rename(tmp, self._path, options)
        finally:
            if self._fs.exists(tmp):
                self._fs.delete(tmp, False)

    def _put(self, path, data: bytearray) -> None:
        out = self._fs.create(path, True)
        try:
            out.write(data)
            out.hflush()
            try:
                out.hsync()
            except Exception:  # noqa: BLE001, S110 - a stream without hsync still persists on close
                pass
        finally:
            out.close()
