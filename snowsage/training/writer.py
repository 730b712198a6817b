"""Streaming Parquet to S3 with bounded memory: N rotating files per split, each a multipart upload.

``SplitWriter.write(batch)`` cuts each Arrow batch into N contiguous slices (sizes differing by at
most one row, the remainder rotating so the files stay balanced) and writes each slice as a row
group straight into its file's ``S3Upload``, which holds at most one part (``part_size`` bytes)
before sending it. So memory is about one batch plus N parts, whatever the table's size. Files are
opened on their first row, so no file is empty; the objects are SSE-KMS with ``kms_key_id`` when
given (else the bucket's default encryption).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

DEFAULT_PART_SIZE = 8 * 1024 * 1024  # S3 needs >= 5 MiB for every part but the last


def encryption_args(kms_key_id: str | None) -> dict[str, str]:
    return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key_id} if kms_key_id else {}


class S3Upload:
    """A write-only file object over one S3 object: a PutObject when small, else a multipart upload."""

    def __init__(
        self, s3: Any, bucket: str, key: str, *, kms_key_id: str | None, part_size: int = DEFAULT_PART_SIZE
    ) -> None:
        self._s3, self.bucket, self.key = s3, bucket, key
        self._extra = encryption_args(kms_key_id)
        self._part_size = part_size
        self._buffer = bytearray()
        self._parts: list[dict[str, Any]] = []
        self._upload_id: str | None = None
        self._position = 0
        self.peak_buffered = 0  # the most bytes held at once (tests check the bound)
        self.closed = False
        self.finished = False
        self.aborted = False

    # the file-object surface pyarrow uses
    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self.aborted:  # a writer closed after abort() adds its footer to nothing
            return len(data)
        self._buffer += data
        self._position += len(data)
        self.peak_buffered = max(self.peak_buffered, len(self._buffer))
        while len(self._buffer) >= self._part_size:
            chunk = bytes(self._buffer[: self._part_size])
            del self._buffer[: self._part_size]
            self._send_part(chunk)
        return len(data)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        pass

    def writable(self) -> bool:
        return True

    def close(self) -> None:  # pyarrow may close its sink; finishing is explicit (finish/abort)
        self.closed = True

    def _send_part(self, chunk: bytes) -> None:
        if self._upload_id is None:
            self._upload_id = self._s3.create_multipart_upload(
                Bucket=self.bucket, Key=self.key, **self._extra
            )["UploadId"]
        number = len(self._parts) + 1
        etag = self._s3.upload_part(
            Bucket=self.bucket, Key=self.key, UploadId=self._upload_id, PartNumber=number, Body=chunk
        )["ETag"]
        self._parts.append({"PartNumber": number, "ETag": etag})

    def finish(self) -> None:
        """Make the object exist: the rest as a last part (or one PutObject if it all fit in a part)."""
        if self._upload_id is None:
            self._s3.put_object(Bucket=self.bucket, Key=self.key, Body=bytes(self._buffer), **self._extra)
        else:
            if self._buffer:
                self._send_part(bytes(self._buffer))
            self._s3.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )
        self._buffer = bytearray()
        self.finished = True

    def abort(self) -> None:
        """Drop an unfinished upload (its parts cost storage until aborted)."""
        self.aborted = True
        self._buffer = bytearray()
        if self._upload_id is not None and not self.finished:
            with contextlib.suppress(Exception):
                self._s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id)


class SplitWriter:
    """Up to ``files`` Parquet files ``<prefix>part-NNNNN.parquet`` for one split, rows balanced."""

    def __init__(
        self,
        s3: Any,
        bucket: str,
        prefix: str,
        *,
        files: int,
        schema: pa.Schema,
        kms_key_id: str | None,
        part_size: int = DEFAULT_PART_SIZE,
    ) -> None:
        self._s3, self._bucket, self._prefix = s3, bucket, prefix
        self._files = files
        self._schema = schema
        self._kms_key_id = kms_key_id
        self._part_size = part_size
        self._uploads: dict[int, S3Upload] = {}
        self._writers: dict[int, pq.ParquetWriter] = {}
        self._rows = [0] * files
        self._next = 0  # the file that gets the next remainder row

    def key(self, index: int) -> str:
        return f"{self._prefix}part-{index:05d}.parquet"

    @property
    def uploads(self) -> list[S3Upload]:
        return list(self._uploads.values())

    def _writer(self, index: int) -> pq.ParquetWriter:
        if index not in self._writers:
            upload = S3Upload(
                self._s3,
                self._bucket,
                self.key(index),
                kms_key_id=self._kms_key_id,
                part_size=self._part_size,
            )
            self._uploads[index] = upload
            # No dictionary: continuous features never repeat, so pyarrow's default dictionary pages
            # only add bytes (about a quarter more) that S3 stores and every host downloads.
            self._writers[index] = pq.ParquetWriter(
                upload, self._schema, compression="snappy", use_dictionary=False
            )
        return self._writers[index]

    def _slices(self, rows: int) -> Iterator[tuple[int, int, int]]:
        base, extra = divmod(rows, self._files)
        offset = 0
        for j in range(self._files):
            index = (self._next + j) % self._files
            size = base + (1 if j < extra else 0)
            if size:
                yield index, offset, size
                offset += size
        self._next = (self._next + extra) % self._files

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.schema != self._schema:
            batch = pa.Table.from_batches([batch]).cast(self._schema).combine_chunks().to_batches()[0]
        for index, offset, size in self._slices(batch.num_rows):
            self._writer(index).write_batch(batch.slice(offset, size))
            self._rows[index] += size

    def close(self) -> tuple[tuple[str, int], ...]:
        """Finish every file; returns (key relative to the prefix, rows) per file, in order."""
        for index in sorted(self._writers):
            self._writers[index].close()
            self._uploads[index].finish()
        return tuple(
            (self.key(i)[len(self._prefix) :], self._rows[i]) for i in sorted(self._writers) if self._rows[i]
        )

    def abort(self) -> None:
        for index, writer in self._writers.items():
            self._uploads[index].abort()
            with contextlib.suppress(Exception):
                writer.close()
