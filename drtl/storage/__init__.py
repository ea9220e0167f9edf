"""S3 object storage (boto3): the prepare stage's ``s3://`` dataset source, from any S3-compatible
endpoint (:func:`download_folder`). Datasets get there with DVC (an S3 remote, docs/storage.md).

Configuration comes from explicit arguments or the environment (see :meth:`S3Config.from_env`):

- credentials: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` (optional ``AWS_SESSION_TOKEN``);
  when unset, boto3's own chain (profiles, instance roles) is used;
- endpoint: ``DRTL_S3_ENDPOINT``, else ``AWS_ENDPOINT_URL_S3``, else ``AWS_ENDPOINT_URL``, else
  ``MLFLOW_S3_ENDPOINT_URL``; none means AWS S3 itself;
- region: ``AWS_REGION`` / ``AWS_DEFAULT_REGION`` (default ``us-east-1``);
- default location: ``DRTL_S3_URI`` (``s3://bucket/prefix``), used by :meth:`S3Config.uri`.

Every failure raised on purpose is a :class:`StorageError` (a :class:`drtl.errors.DRTLError`) with
one actionable line naming the URI and the endpoint; a malformed URI is a
:class:`drtl.errors.ConfigError`. Downloads are atomic: a folder is fetched into a temporary
sibling and swapped in only when every object arrived, so a failed download leaves an existing
folder untouched. Progress bars show on a terminal only (:mod:`drtl.progress`).
"""

from drtl.storage.config import DEFAULT_REGION, ENDPOINT_VARS, S3Config, join_uri, make_client, parse_s3_uri
from drtl.storage.errors import S3AuthError, S3ConnectionError, S3NotFoundError, StorageError, translate_error
from drtl.storage.transfer import download_folder, list_keys

__all__ = [
    "S3Config", "StorageError", "S3AuthError", "S3NotFoundError", "S3ConnectionError",
    "parse_s3_uri", "join_uri", "make_client", "download_folder", "list_keys", "translate_error",
    "DEFAULT_REGION", "ENDPOINT_VARS",
]

